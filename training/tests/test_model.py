import unittest

from helpers import TRAINING  # noqa: F401

import torch

from lcd_training.losses import bce_dice_loss, soft_dice_loss
from lcd_training.model import SNUNetCBAM, count_parameters, predict_padded


class ModelTest(unittest.TestCase):
    def test_shapes_for_widths(self):
        torch.manual_seed(0)
        for width in (16, 32):
            m = SNUNetCBAM(3, width).eval()
            a, b = torch.randn(2, 3, 32, 48), torch.randn(2, 3, 32, 48)
            with torch.no_grad():
                logits, emb = m(a, b)
            self.assertEqual(tuple(logits.shape), (2, 1, 32, 48))
            self.assertEqual(tuple(emb.shape), (2, 4 * width))
            self.assertEqual(m.embedding_dim, 4 * width)
            self.assertTrue(torch.isfinite(logits).all())

    def test_paper_parameter_count(self):
        # SNUNet-CD/32 has 12.03 M parameters in the paper (two-class head; ours has one output channel)
        self.assertAlmostEqual(count_parameters(SNUNetCBAM(3, 32)) / 1e6, 12.03, delta=0.01)

    def test_sizes_must_be_multiples_of_16_or_padded(self):
        m = SNUNetCBAM(3, 8).eval()
        a, b = torch.randn(1, 3, 50, 70), torch.randn(1, 3, 50, 70)
        with self.assertRaises(ValueError):
            m(a, b)
        logits, emb = predict_padded(m, a, b)
        self.assertEqual(tuple(logits.shape), (1, 1, 50, 70))
        self.assertEqual(tuple(emb.shape), (1, 32))
        with self.assertRaises(ValueError):
            m(torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 48))

    def test_siamese_encoder_is_shared_and_embedding_is_symmetric(self):
        m = SNUNetCBAM(4, 8).eval()
        a, b = torch.randn(1, 4, 32, 32), torch.randn(1, 4, 32, 32)
        with torch.no_grad():
            _, e1 = m(a, b)
            _, e2 = m(b, a)
            _, e0 = m(a, a)
        self.assertTrue(torch.allclose(e1, e2, atol=1e-6))
        self.assertTrue(torch.allclose(e0, torch.zeros_like(e0)))
        self.assertEqual(len(m.enc), 5)

    def test_loss(self):
        target = torch.zeros(2, 1, 8, 8)
        target[:, :, 2:5, 2:5] = 1
        good = (target * 2 - 1) * 12.0
        bad = -good
        lg, _, dg = bce_dice_loss(good, target)
        lb, _, _ = bce_dice_loss(bad, target)
        self.assertLess(float(lg), 0.01)
        self.assertLess(float(dg), 0.01)
        self.assertGreater(float(lb), 5.0)
        # empty target, confident "no change": near-zero loss
        self.assertLess(float(soft_dice_loss(torch.full((1, 1, 8, 8), -12.0), torch.zeros(1, 1, 8, 8))), 0.01)
        logits = torch.randn(2, 1, 8, 8, requires_grad=True)
        total, bce, dice = bce_dice_loss(logits, target, 1.0, 0.5)
        self.assertAlmostEqual(float(total), float(bce) + 0.5 * float(dice), places=5)
        total.backward()
        self.assertTrue(torch.isfinite(logits.grad).all())


if __name__ == "__main__":
    unittest.main()
