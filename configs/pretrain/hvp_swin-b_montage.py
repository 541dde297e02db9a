# HVP-MTL on Swin-B with MCL's montage contrast as a fifth task (arXiv 2304.02010 on top of
# arXiv 2310.07510): everything of hvp_swin-b.py, plus montages (r = 1, 2, 4, 8; 16 images per GPU
# -> [16, 4, 1, 1] per level) cut from the clean view 1 and appended to the student's backbone
# batch, a light FPN over the four Swin stages (which trains norm0-norm2), MCL's 7x7-cell head and
# per-level predictors; targets are the EMA teacher's P5 embeddings of view 1 (one branch;
# docs/MCL.md). The task weight 0.1 is not tuned: it puts the initial weighted montage term at
# about the size of the MIM term. docs/method.md
_base_ = './hvp_swin-b.py'
custom_imports = dict(imports=['hvp_mtl', 'mmdet.models'], allow_failed_imports=False)

fpn_channels = 256
model = dict(
    backbone=dict(out_indices=(0, 1, 2, 3)),  # the other tasks read the last stage
    # no norm in the FPN: mmdet's standard (transferable) FPN; BN in the cell head as MCL's
    tasks=dict(montage=dict(
        type='MontageContrastiveHead',
        neck=dict(type='mmdet.FPN', in_channels=[128, 256, 512, 1024],
                  out_channels=fpn_channels, num_outs=4),
        cell_head=dict(type='MCLCellHead', in_channels=fpn_channels, num_convs=4,
                       cell_size=7, hidden_channels=2048,  # P5 at 224 px
                       out_channels=256),
        predictors=dict(type='MCLPredictors', num_levels=4, in_channels=256,
                        hidden_channels=2048, out_channels=256),
        loss=dict(type='MultiLevelContrastiveLoss', level_weights=[1 / 2, 1 / 4, 1 / 8, 1 / 8],
                  temperature=1.0),
        ratios=[1, 2, 4, 8],
        batch_divisors=[1, 4, 16, 32])),
    loss_weights=dict(montage=0.1))
