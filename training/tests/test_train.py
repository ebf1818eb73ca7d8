import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from helpers import TINY_CONFIG, TRAINING, run_train, simple_dataset, write_manifest, write_png

import numpy as np

from lcd_training import synthetic
from lcd_training.onnx_meta import model_info
from lcd_training.onnx_ref import check_parity

REQUIRED_META = ["lcd.contract_version", "lcd.bands", "lcd.band_names", "lcd.normalization", "lcd.tile_size",
                 "lcd.threshold", "lcd.dataset_version", "lcd.config_hash", "lcd.code_version", "lcd.embedding_dim",
                 "lcd.architecture", "lcd.base_width"]


class TinyTrainingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="lcd-train-test-")
        cls.data = os.path.join(cls.tmp, "data")
        synthetic.write_dataset(cls.data, 8, 64, seed=3)
        cls.manifest = os.path.join(cls.data, "manifest.json")
        cls.out = os.path.join(cls.tmp, "run1")
        cls.code, cls.events = run_train(cls.manifest, cls.out, TINY_CONFIG)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_progress_protocol(self):
        self.assertEqual(self.code, 0, self.events[-1])
        kinds = [e["event"] for e in self.events]
        self.assertEqual(kinds[0], "start")
        self.assertEqual(kinds[-1], "done")
        self.assertIn("step", kinds)
        self.assertIn("epoch", kinds)
        step = next(e for e in self.events if e["event"] == "step")
        for k in ("epoch", "step", "loss", "lr", "pairsPerSecond"):
            self.assertIn(k, step)
        epoch = next(e for e in self.events if e["event"] == "epoch")
        self.assertIn("trainLoss", epoch)
        self.assertEqual(set(epoch["val"]), {"precision", "recall", "f1", "iou"})
        names = {e["name"] for e in self.events if e["event"] == "artifact"}
        self.assertTrue({"best.pt", "model.onnx", "evaluation.json", "reference_stats.json", "parity"} <= names)

    def test_artifacts(self):
        for fn in ("best.pt", "model.onnx", "evaluation.json", "reference_stats.json", "parity/index.json"):
            self.assertTrue(os.path.isfile(os.path.join(self.out, fn)), fn)
        with open(os.path.join(self.out, "evaluation.json")) as f:
            ev = json.load(f)
        for k in ("precision", "recall", "f1", "iou", "overallAccuracy", "kappa", "confusion", "threshold"):
            self.assertIn(k, ev)
        c = ev["confusion"]
        self.assertEqual(c["tp"] + c["fp"] + c["fn"] + c["tn"], ev["pixels"])
        with open(os.path.join(self.out, "reference_stats.json")) as f:
            rs = json.load(f)
        self.assertEqual(len(rs["bands"]["perBand"]), 3)
        self.assertEqual(len(rs["bands"]["perBand"][0]["histogram"]), 64)
        for k in ("mean", "std", "min", "max"):
            self.assertIn(k, rs["bands"]["perBand"][0])
        emb = rs["embedding"]
        self.assertEqual(emb["dim"], 32)
        self.assertEqual(len(emb["mean"]), 32)
        self.assertEqual(len(emb["var"]), 32)
        self.assertTrue(0 < len(emb["sample"]) <= 256)
        self.assertEqual(len(emb["sample"][0]), 32)
        self.assertIn("changedFraction", rs["classBalance"])

    def test_onnx_contract_metadata_and_parity(self):
        with open(os.path.join(self.out, "model.onnx"), "rb") as f:
            info = model_info(f.read())
        self.assertEqual(info["inputs"], ["before", "after"])
        self.assertEqual(info["outputs"], ["change_logits", "embedding"])
        self.assertGreaterEqual(info["opsets"][""], 13)
        meta = info["metadata"]
        for k in REQUIRED_META:
            self.assertIn(k, meta)
        self.assertEqual(meta["lcd.contract_version"], "1")
        self.assertEqual(meta["lcd.architecture"], "SNUNet-CBAM")
        self.assertEqual(meta["lcd.bands"], "3")
        self.assertEqual(json.loads(meta["lcd.band_names"]), ["red", "green", "blue"])
        norm = json.loads(meta["lcd.normalization"])
        self.assertEqual(norm["scale"], 255)
        self.assertEqual(len(norm["mean"]), 3)
        self.assertEqual(meta["lcd.embedding_dim"], "32")
        self.assertEqual(meta["lcd.base_width"], "8")
        self.assertEqual(len(meta["lcd.config_hash"]), 64)
        with open(self.manifest) as f:
            self.assertEqual(meta["lcd.dataset_version"], json.load(f)["datasetVersion"])
        with open(os.path.join(self.out, "parity", "index.json")) as f:
            idx = json.load(f)
        shp = idx["tensors"]["before"]["shape"]
        self.assertEqual(shp[:2], [2, 3])
        self.assertEqual(idx["tensors"]["change_logits"]["shape"], [2, 1] + shp[2:])
        self.assertEqual(os.path.getsize(os.path.join(self.out, "parity", "before.bin")), 4 * int(np.prod(shp)))
        diffs = check_parity(os.path.join(self.out, "model.onnx"), os.path.join(self.out, "parity"))
        self.assertLess(diffs["change_logits"], 1e-3, diffs)
        self.assertLess(diffs["embedding"], 1e-3, diffs)

    def test_evaluate_cli_matches_evaluation_json(self):
        from lcd_training import evaluate
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = evaluate.main(["--checkpoint", os.path.join(self.out, "best.pt"), "--manifest", self.manifest,
                                  "--split", "val"])
        self.assertEqual(code, 0)
        res = json.loads(buf.getvalue().splitlines()[-1])
        with open(os.path.join(self.out, "evaluation.json")) as f:
            ev = json.load(f)
        self.assertEqual(ev["split"], "val")  # no test items in this manifest
        self.assertEqual(res["confusion"], ev["confusion"])

    def test_same_inputs_same_weights(self):
        out2 = os.path.join(self.tmp, "run2")
        code, events = run_train(self.manifest, out2, TINY_CONFIG)
        self.assertEqual(code, 0)
        h1 = self.events[-1]["weightsSha256"]
        self.assertEqual(events[-1]["weightsSha256"], h1)
        with open(os.path.join(self.out, "model.onnx"), "rb") as f1, open(os.path.join(out2, "model.onnx"), "rb") as f2:
            self.assertEqual(f1.read(), f2.read())


class BadInputTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="lcd-bad-")
        self.manifest, self.items = simple_dataset(self.tmp, n=3, size=32)
        self.out = os.path.join(self.tmp, "out")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def expect_error(self, code_name, fragment, config=None):
        code, events = run_train(self.manifest, self.out, config if config is not None else TINY_CONFIG)
        self.assertEqual(code, 2, events)
        err = events[-1]
        self.assertEqual(err["event"], "error")
        self.assertEqual(err["code"], code_name, err)
        self.assertIn(fragment, err["message"])
        return err

    def rewrite(self, items):
        self.manifest = write_manifest(self.tmp, items)

    def test_mismatched_sizes(self):
        write_png(os.path.join(self.tmp, "B", "1.png"), np.zeros((16, 32, 3), np.uint8))
        err = self.expect_error("size_mismatch", "items[1]")
        self.assertIn("32x32x3", err["message"])
        self.assertIn("16x32x3", err["message"])

    def test_missing_label(self):
        self.items[2]["label"] = None
        self.rewrite(self.items)
        self.expect_error("missing_label", "items[2]")

    def test_missing_label_file(self):
        os.remove(os.path.join(self.tmp, "label", "0.png"))
        self.expect_error("file_not_found", "items[0]")

    def test_non_binary_label(self):
        lab = np.zeros((32, 32), np.uint8)
        lab[0, 0] = 128
        write_png(os.path.join(self.tmp, "label", "1.png"), lab)
        err = self.expect_error("non_binary_label", "items[1]")
        self.assertIn("128", err["message"])

    def test_zero_one_labels_are_accepted(self):
        lab = np.zeros((32, 32), np.uint8)
        lab[3:6, 3:6] = 1
        for i in range(3):
            write_png(os.path.join(self.tmp, "label", f"{i}.png"), lab)
        code, events = run_train(self.manifest, self.out, dict(TINY_CONFIG, tileSize=32))
        self.assertEqual(code, 0, events[-1])

    def test_empty_dataset(self):
        self.rewrite([])
        self.expect_error("empty_dataset", "empty")

    def test_nan_in_bands(self):
        a = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32) * 255
        a[5, 5, 1] = np.nan
        np.save(os.path.join(self.tmp, "A", "nan.npy"), a)
        self.items[1]["before"] = "A/nan.npy"
        self.rewrite(self.items)
        err = self.expect_error("nan_in_bands", "items[1]")
        self.assertIn("band", err["message"])

    def add_small_item(self, split, side=12):
        tiny = np.zeros((side, side, 3), np.uint8)
        write_png(os.path.join(self.tmp, "A", "small.png"), tiny)
        write_png(os.path.join(self.tmp, "B", "small.png"), tiny)
        write_png(os.path.join(self.tmp, "label", "small.png"), np.zeros((side, side), np.uint8))
        self.items.append({"before": "A/small.png", "after": "B/small.png", "label": "label/small.png", "split": split})
        self.rewrite(self.items)

    def test_item_smaller_than_the_model_takes_is_refused_before_training(self):
        for split in ("test", "val", "train"):
            with self.subTest(split=split):
                self.items = [it for it in self.items if it["before"] != "A/small.png"]
                self.add_small_item(split)
                err = self.expect_error("image_too_small", "items[3] (A/small.png)", dict(TINY_CONFIG, tileSize=32))
                self.assertIn("12x12", err["message"])
                self.assertIn(f"{split} split", err["message"])
                # refused up front: nothing was trained or written
                self.assertFalse(os.path.exists(os.path.join(self.out, "best.pt")))

    def test_item_of_exactly_the_minimum_size_trains_and_evaluates(self):
        self.add_small_item("test", side=16)
        code, events = run_train(self.manifest, self.out, dict(TINY_CONFIG, tileSize=32))
        self.assertEqual(code, 0, events[-1])
        done = events[-1]
        self.assertEqual(done["event"], "done")
        self.assertEqual(done["evaluation"]["split"], "test")
        self.assertTrue(os.path.isfile(os.path.join(self.out, "parity", "index.json")))

    def test_bad_config(self):
        self.expect_error("invalid_config", "baseWidth", dict(TINY_CONFIG, baseWidth=10))
        self.expect_error("invalid_config", "epochs", dict(TINY_CONFIG, epochs=0))
        self.expect_error("invalid_config", "learningRate", dict(TINY_CONFIG, learningRate="fast"))
        self.expect_error("invalid_config", "unknown config key", dict(TINY_CONFIG, epochz=3))
        self.expect_error("invalid_config", "not valid JSON", "{epochs: 1")

    def test_cli_subprocess_exit_code_and_json_lines(self):
        self.items[0]["label"] = None
        self.rewrite(self.items)
        r = subprocess.run([sys.executable, "-m", "lcd_training.train", "--manifest", self.manifest, "--out",
                            self.out, "--config", json.dumps(TINY_CONFIG)], cwd=TRAINING, capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(r.returncode, 2, r.stderr)
        lines = [json.loads(x) for x in r.stdout.splitlines()]  # every stdout line is JSON
        self.assertEqual(lines[-1]["event"], "error")
        self.assertIn("items[0]", lines[-1]["message"])
        self.assertIn("missing label", lines[-1]["message"])


if __name__ == "__main__":
    unittest.main()


class CodeVersionTest(unittest.TestCase):
    """The code version names what ran: a commit, and whether the tree differed from it."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="lcd-codever-")
        self.saved = os.environ.pop("LCD_CODE_VERSION", None)

    def tearDown(self):
        if self.saved is not None:
            os.environ["LCD_CODE_VERSION"] = self.saved
        shutil.rmtree(self.tmp, ignore_errors=True)

    def git(self, *args):
        r = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", self.tmp, *args],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def test_commit_then_dirty_then_override(self):
        from lcd_training.common import code_version
        if shutil.which("git") is None:
            self.skipTest("git is not installed")
        self.git("init", "-q")
        with open(os.path.join(self.tmp, "train.py"), "w") as f:
            f.write("v1\n")
        self.git("add", "train.py")
        self.git("commit", "-q", "-m", "one")
        head = self.git("rev-parse", "HEAD")
        self.assertEqual(code_version(self.tmp), head)
        with open(os.path.join(self.tmp, "untracked.txt"), "w") as f:
            f.write("scratch\n")
        self.assertEqual(code_version(self.tmp), head)  # untracked files do not make the tree dirty
        with open(os.path.join(self.tmp, "train.py"), "w") as f:
            f.write("v2\n")
        self.assertEqual(code_version(self.tmp), head + "-dirty")
        self.git("add", "train.py")
        self.assertEqual(code_version(self.tmp), head + "-dirty")  # staged but not committed is still not `head`
        os.environ["LCD_CODE_VERSION"] = "release-1.2"
        self.assertEqual(code_version(self.tmp), "release-1.2")

    def test_outside_a_repository_hashes_the_sources(self):
        from lcd_training.common import code_version
        self.assertTrue(code_version(self.tmp).startswith("src-sha256:"))
