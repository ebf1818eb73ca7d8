import shutil
import tempfile
import unittest

from helpers import simple_dataset, write_manifest

from lcd_training import baseline


class BaselineTest(unittest.TestCase):
    def test_perfect_difference_baseline(self):
        tmp = tempfile.mkdtemp(prefix="lcd-base-")
        try:
            _, items = simple_dataset(tmp, n=4, size=32)
            items[0]["split"] = "val"
            items[1]["split"] = "test"
            items[2]["split"] = "test"
            manifest = write_manifest(tmp, items)
            res = baseline.run(manifest, None, 0.0, 0)
            # the change inverts the pixels (|diff| >= 1 everywhere in the square, 0 outside)
            self.assertEqual(res["test"]["f1"], 1.0)
            self.assertGreater(res["threshold"], 0)
            self.assertEqual(res["counts"], {"tune": 1, "test": 2})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
