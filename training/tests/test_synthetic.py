import contextlib
import io
import json
import os
import tempfile
import unittest

from helpers import TRAINING  # noqa: F401  (puts training/ on sys.path)

import numpy as np

from lcd_training import synthetic
from lcd_training.synthetic import generate_pair


class SyntheticTest(unittest.TestCase):
    def test_deterministic_per_seed_and_index(self):
        a = generate_pair(11, 3, 64)
        b = generate_pair(11, 3, 64)
        for x, y in ((a.before, b.before), (a.after, b.after), (a.label, b.label)):
            self.assertTrue(np.array_equal(x, y))
        self.assertEqual(a.meta, b.meta)
        c = generate_pair(12, 3, 64)
        self.assertFalse(np.array_equal(a.before, c.before))

    def test_output_types_and_sizes(self):
        for size, height in ((64, None), (96, 48), (72, 100)):
            p = generate_pair(1, 0, size, height=height)
            h = height or size
            self.assertEqual(p.before.shape, (h, size, 3))
            self.assertEqual(p.after.shape, (h, size, 3))
            self.assertEqual(p.label.shape, (h, size))
            for arr in (p.before, p.after, p.label):
                self.assertEqual(arr.dtype, np.uint8)
            self.assertTrue(set(np.unique(p.label).tolist()) <= {0, 255})

    def test_nuisance_only_pairs_have_empty_label_but_differ(self):
        for i in range(4):
            p = generate_pair(5, i, 64, nuisance_only=True)
            self.assertEqual(int(p.label.max()), 0)
            self.assertTrue(p.meta["nuisanceOnly"])
            # nuisance changes are present: the images are not identical
            self.assertGreater(np.abs(p.after.astype(int) - p.before.astype(int)).mean(), 0.5)
        # pairs drawn at random follow the flag in their metadata
        for i in range(12):
            p = generate_pair(9, i, 64, nuisance_only_fraction=0.5)
            self.assertEqual(p.meta["nuisanceOnly"], int(p.label.max()) == 0)

    def test_real_changes_are_labelled_and_visible(self):
        inside, outside = [], []
        for i in range(6):
            p = generate_pair(3, i, 96, nuisance_only=False, season_shift=0.0)
            self.assertGreater(int((p.label > 0).sum()), 0)
            self.assertTrue(p.meta["changes"])
            d = np.abs(p.after.astype(float) - p.before.astype(float)).mean(axis=2)
            inside.append(d[p.label > 0].mean())
            outside.append(d[p.label == 0].mean())
        self.assertGreater(np.mean(inside), 2 * np.mean(outside))

    def test_season_shift_changes_colours_not_scene(self):
        a = generate_pair(4, 1, 64, season_shift=0.0)
        b = generate_pair(4, 1, 64, season_shift=2.0)
        self.assertTrue(np.array_equal(a.label, b.label))
        self.assertFalse(np.array_equal(a.after, b.after))

    def test_cli_refuses_sizes_below_the_models_minimum(self):
        from lcd_training.model import SIZE_MULTIPLE
        self.assertEqual(synthetic.MIN_SIZE, SIZE_MULTIPLE)
        for size in (8, 15):
            with tempfile.TemporaryDirectory() as d:
                with contextlib.redirect_stdout(io.StringIO()) as out:
                    self.assertEqual(synthetic.main(["--out", d, "--pairs", "1", "--size", str(size)]), 2)
                err = json.loads(out.getvalue().splitlines()[-1])
                self.assertEqual(err["event"], "error")
                self.assertEqual(err["field"], "size")
                self.assertIn(f"--size {size} is below 16 px", err["message"])
                self.assertFalse(os.path.exists(os.path.join(d, "manifest.json")))
        with self.assertRaisesRegex(ValueError, "at least 16 px"):
            generate_pair(1, 0, 64, height=12)
        with tempfile.TemporaryDirectory() as d:
            with contextlib.redirect_stdout(io.StringIO()):
                self.assertEqual(synthetic.main(["--out", d, "--pairs", "1", "--size", "16"]), 0)

    def test_cli_writes_dataset_and_manifest(self):
        with tempfile.TemporaryDirectory() as d:
            with contextlib.redirect_stdout(io.StringIO()) as out:
                self.assertEqual(synthetic.main(["--out", d, "--pairs", "2", "--size", "32", "--seed", "1"]), 0)
                self.assertEqual(synthetic.main(["--out", d, "--pairs", "1", "--size", "32", "--seed", "2",
                                                 "--split", "test", "--prefix", "t_", "--append"]), 0)
            self.assertEqual(json.loads(out.getvalue().splitlines()[-1])["items"], 3)
            with open(os.path.join(d, "manifest.json")) as f:
                m = json.load(f)
            self.assertTrue(m["datasetVersion"].startswith("synthetic-v"))
            self.assertEqual(len(m["items"]), 3)
            self.assertEqual(m["items"][2]["split"], "test")
            self.assertNotIn("split", m["items"][0])
            for it in m["items"]:
                for k in ("before", "after", "label"):
                    self.assertTrue(os.path.isfile(os.path.join(d, it[k])))
            self.assertEqual(sorted(os.listdir(os.path.join(d, "A"))), sorted(os.listdir(os.path.join(d, "label"))))


if __name__ == "__main__":
    unittest.main()
