#!/usr/bin/python3
"""Float32 rounding error of Winograd F(2x2, 3x3) and F(4x4, 3x3) (cnn uses both, F(4x4, 3x3)
on 4x4 planes only), against the same convolution in float64: the figures behind
docs/design-notes.md's "Not done: larger tiles" and "kAuto's fourth exception".

  /usr/bin/python3 bench/winograd_error.py      (needs numpy: apt-get install python3-numpy)

Inputs as a layer after a ReLU sees them (non-negative, half zeros), He-scaled weights,
16x16 planes, 8 output channels, 32 to 128 input channels. Prints, per case, the largest
error over the largest output magnitude, and the mean error relative to each output.
"""
import numpy as np


def matrices(tile):
    """B^T, G and A^T of F(tile x tile, 3x3), interpolation points 0, +-1 (and +-2, 1/2...)."""
    if tile == 2:
        bt = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
        g = [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]]
        at = [[1, 1, 1, 0], [0, 1, -1, -1]]
    else:
        bt = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
              [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
        g = [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
             [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]
        at = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
    return [np.array(m, dtype=np.float64) for m in (bt, g, at)]


def winograd(x, w, tile, dtype):
    """A valid 3x3 correlation of x (C, H, W) with w (O, C, 3, 3) by F(tile x tile, 3x3),
    every step rounded to dtype."""
    bt, g, at = [m.astype(dtype) for m in matrices(tile)]
    channels, height, width = x.shape
    size = tile + 2
    tiles_h, tiles_w = -(-(height - 2) // tile), -(-(width - 2) // tile)
    padded = np.zeros((channels, tiles_h * tile + 2, tiles_w * tile + 2), dtype)
    padded[:, :height, :width] = x
    u = np.einsum("ij,ocjk,lk->ocil", g, w.astype(dtype), g).astype(dtype)
    y = np.zeros((w.shape[0], tiles_h * tile, tiles_w * tile), dtype)
    for i in range(tiles_h):
        for j in range(tiles_w):
            d = padded[:, i * tile:i * tile + size, j * tile:j * tile + size]
            v = np.einsum("ij,cjk,lk->cil", bt, d, bt).astype(dtype)
            m = np.einsum("ocil,cil->oil", u, v).astype(dtype)
            y[:, i * tile:(i + 1) * tile, j * tile:(j + 1) * tile] = np.einsum("ij,ojk,lk->oil", at, m, at)
    return y[:, :height - 2, :width - 2]


def main():
    rng = np.random.default_rng(0)
    print("channels  F(n x n, 3x3)  max error / max |y|  mean relative error")
    for channels in (32, 64, 128):
        x = np.maximum(rng.standard_normal((channels, 16, 16)), 0)
        w = rng.standard_normal((8, channels, 3, 3)) * np.sqrt(2 / (9 * channels))
        exact = winograd(x, w, 2, np.float64)
        for tile in (2, 4):
            error = np.abs(winograd(x.astype(np.float32), w.astype(np.float32), tile, np.float32) - exact)
            print("%8d  %13d  %19.2e  %19.2e" % (channels, tile, error.max() / np.abs(exact).max(),
                                                  (error / np.abs(exact).clip(1e-3)).mean()))


if __name__ == "__main__":
    main()
