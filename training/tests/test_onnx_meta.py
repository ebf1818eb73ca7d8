import unittest

from helpers import TRAINING  # noqa: F401

from lcd_training.onnx_meta import (decode_varint, encode_varint, iter_fields, model_info, read_metadata,
                                    set_metadata)


def _field(fno, payload):
    return encode_varint((fno << 3) | 2) + encode_varint(len(payload)) + payload


class OnnxMetaTest(unittest.TestCase):
    def test_varint_roundtrip(self):
        for v in (0, 1, 127, 128, 300, 2 ** 31, 2 ** 63 - 1):
            enc = encode_varint(v)
            self.assertEqual(decode_varint(enc, 0), (v, len(enc)))

    def test_set_and_replace_metadata(self):
        # a fake ModelProto: ir_version=8, producer_name="x", graph with one input name
        graph = _field(11, _field(1, b"before"))
        model = encode_varint(1 << 3) + encode_varint(8) + _field(2, b"x") + _field(7, graph)
        patched = set_metadata(model, {"lcd.a": "1", "lcd.b": '{"k":[1,2]}'})
        self.assertTrue(patched.startswith(model))  # original fields untouched
        self.assertEqual(read_metadata(patched), {"lcd.a": "1", "lcd.b": '{"k":[1,2]}'})
        again = set_metadata(patched, {"lcd.a": "2", "other": "é"})
        self.assertEqual(read_metadata(again), {"lcd.a": "2", "lcd.b": '{"k":[1,2]}', "other": "é"})
        self.assertEqual(sum(1 for f, *_ in iter_fields(again) if f == 14), 3)
        info = model_info(again)
        self.assertEqual(info["irVersion"], 8)
        self.assertEqual(info["producer"], "x")
        self.assertEqual(info["inputs"], ["before"])

    def test_rejects_non_strings(self):
        with self.assertRaises(TypeError):
            set_metadata(b"", {"a": 1})


if __name__ == "__main__":
    unittest.main()
