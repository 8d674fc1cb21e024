"""Cubic dilation and erosion as three 1D max pools equal one cubic max pool."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lidcvae.morphology import dilate_cube, erode_cube


def test_separable_dilation_and_erosion_equal_the_cubic_max_pool():
    torch.manual_seed(0)
    masks = (torch.rand(2, 1, 9, 11, 13) > 0.85).float()  # sparse 0/1, voxels at the grid's edges too
    soft = torch.rand(2, 3, 9, 11, 13)  # soft masks and multi-channel feature maps alike
    for grid in (masks, soft):
        for radius in (1, 2, 3):
            size = 2 * radius + 1
            assert torch.equal(dilate_cube(grid, radius), F.max_pool3d(grid, size, stride=1, padding=radius))
            assert torch.equal(erode_cube(grid, radius), -F.max_pool3d(-grid, size, stride=1, padding=radius))
        assert torch.equal(dilate_cube(grid, 0), grid) and torch.equal(erode_cube(grid, 0), grid)


def test_a_single_voxel_dilates_to_a_cube_and_a_cube_erodes_to_its_core():
    mask = torch.zeros(1, 1, 9, 9, 9)
    mask[0, 0, 4, 4, 4] = 1.0
    cube = dilate_cube(mask, 2)
    assert cube.sum().item() == 125 and cube[0, 0, 2:7, 2:7, 2:7].min().item() == 1.0
    core = erode_cube(cube, 2)
    assert torch.equal(core, mask)
