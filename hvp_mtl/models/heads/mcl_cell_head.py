"""MCL's region head and per-level predictors (arXiv 2304.02010).

The head cuts pyramid maps into square cells of ``cell_size`` (7 at 224 px:
one cell per montage tile), runs ``num_convs`` x (conv3x3 + BN + ReLU) on every
cell on its own, average-pools each cell and projects it with an MLP
``C -> hidden (BN, ReLU) -> out`` followed by ``BatchNorm1d(affine=False)``
(official ``DetConvGpNonLinearHead`` with ``mlp_bn`` and ``last_bn``). The
convs have the layout of mmdet's ``Shared4Conv1FCBBoxHead.shared_convs``, so
they transfer to a 4conv1fc box head.
"""
from collections import OrderedDict
from typing import List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

__all__ = ['MCLCellHead', 'MCLPredictors', 'cut_cells', 'projection_mlp']


def cut_cells(feature: torch.Tensor, cell_size: int) -> torch.Tensor:
    """Square cells of a map, cell by cell.

    Args:
        feature (Tensor): ``[N, C, g*s, g*s]`` with ``s = cell_size``.
        cell_size (int): ``s``.

    Returns:
        Tensor: ``[N * g * g, C, s, s]``; cell ``(n, a, b)`` (row ``a``,
        column ``b`` of image ``n``) is entry ``n * g * g + a * g + b`` -- the
        order of :func:`~hvp_mtl.models.utils.montage.build_montage`'s
        tile labels.
    """
    num, channels, height, width = feature.shape
    if height % cell_size or width % cell_size or height != width:
        raise ValueError(f'a {height}x{width} map does not split into '
                         f'{cell_size}x{cell_size} cells: set cell_head.'
                         "cell_size to the last pyramid level's size "
                         '(input size / 32)')
    grid = height // cell_size
    cells = feature.reshape(num, channels, grid, cell_size, grid, cell_size)
    return cells.permute(0, 2, 4, 1, 3, 5).reshape(
        num * grid * grid, channels, cell_size, cell_size)


def projection_mlp(in_channels: int, hidden_channels: int, out_channels: int,
                   last_bn: bool, norm_cfg: dict) -> nn.Sequential:
    """``fc0 -> bn0 -> relu -> fc1 [-> bn1 (affine=False)]``.

    Norms are named ``bn*`` so that one ``custom_keys`` entry (``'bn'``)
    exempts every batch norm from weight decay and LARS adaptation;
    ``norm_cfg`` is ``BN1d`` or ``SyncBN`` (a model with a
    ``MomentumTeacher`` cannot be converted by ``sync_bn='torch'`` later: the
    teacher's weights are buffers).
    """
    layers = OrderedDict(
        fc0=nn.Linear(in_channels, hidden_channels),
        bn0=build_norm_layer(norm_cfg, hidden_channels)[1],
        relu=nn.ReLU(inplace=True),
        fc1=nn.Linear(hidden_channels, out_channels))
    if last_bn:
        layers['bn1'] = build_norm_layer(dict(norm_cfg, affine=False),
                                         out_channels)[1]
    return nn.Sequential(layers)


@MODELS.register_module()
class MCLCellHead(BaseModule):
    """One embedding per ``cell_size`` cell of each given pyramid map.

    Args:
        in_channels (int): FPN width. Defaults to 256.
        num_convs (int): conv3x3 + norm + ReLU blocks per cell. Defaults to 4.
        cell_size (int): Cell side in map pixels (7 at 224 px). Defaults to 7.
        hidden_channels (int): MLP width. Defaults to 2048.
        out_channels (int): Embedding width. Defaults to 256.
        norm_cfg (dict): Norm of the convs. Defaults to ``BN``.
        mlp_norm_cfg (dict): Norm of the MLP. Defaults to ``BN1d``.
        init_cfg (dict | list, optional): Initialisation config.
    """

    def __init__(self, in_channels: int = 256, num_convs: int = 4,
                 cell_size: int = 7, hidden_channels: int = 2048,
                 out_channels: int = 256, norm_cfg: dict = dict(type='BN'),
                 mlp_norm_cfg: dict = dict(type='BN1d'),
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.cell_size = cell_size
        self.convs = nn.ModuleList(
            ConvModule(in_channels, in_channels, 3, padding=1,
                       norm_cfg=norm_cfg) for _ in range(num_convs))
        self.mlp = projection_mlp(in_channels, hidden_channels, out_channels,
                                  last_bn=True, norm_cfg=mlp_norm_cfg)

    def forward(self, features: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """Cell embeddings of several maps in one pass.

        Args:
            features (Sequence[Tensor]): Maps ``[N_j, C, g_j*s, g_j*s]``.

        Returns:
            list[Tensor]: ``[N_j * g_j^2, out]`` per map, cells ordered as
            :func:`cut_cells`. The cells of all maps share one conv/MLP pass
            (their batch statistics are taken over all of them).
        """
        cells = [cut_cells(f, self.cell_size) for f in features]
        x = torch.cat(cells)
        for conv in self.convs:
            x = conv(x)
        x = self.mlp(F.adaptive_avg_pool2d(x, 1).flatten(1))
        return list(x.split([c.shape[0] for c in cells]))


@MODELS.register_module()
class MCLPredictors(BaseModule):
    """One predictor MLP per montage level (official ``head_num`` predictors).

    Args:
        num_levels (int): Levels. Defaults to 4.
        in_channels (int): Defaults to 256.
        hidden_channels (int): Defaults to 2048.
        out_channels (int): Defaults to 256.
        norm_cfg (dict): Norm of the MLPs. Defaults to ``BN1d``.
        init_cfg (dict | list, optional): Initialisation config.
    """

    def __init__(self, num_levels: int = 4, in_channels: int = 256,
                 hidden_channels: int = 2048, out_channels: int = 256,
                 norm_cfg: dict = dict(type='BN1d'), init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.levels = nn.ModuleList(
            projection_mlp(in_channels, hidden_channels, out_channels,
                           last_bn=False, norm_cfg=norm_cfg)
            for _ in range(num_levels))

    def forward(self, embeddings: List[torch.Tensor]) -> List[torch.Tensor]:
        """L2-normalised predictions, one ``[n_i, out]`` per level."""
        return [F.normalize(mlp(x), dim=1)
                for mlp, x in zip(self.levels, embeddings)]
