# hvp_swin-b.py with the fast data path (docs/PERFORMANCE.md, "Data pipeline: fewer cores per
# GPU"): the loader reads the JPEG's bytes and size only; MultiViewWithMask draws both views'
# RandomResizedCrop boxes in original-image coordinates first (the same distribution), then
# decodes the image once at the coarsest libjpeg DCT scale (1/2, 1/4, 1/8) that keeps both
# crops at least 224 px, and resamples each view from it. Everything else is hvp_swin-b.py.
# Point data_root at pre-resized shards (build_tar_shard_index.py --max-short-side) for more.
_base_ = './hvp_swin-b.py'

train_pipeline = [
    dict(type='LoadImageBytes', backend_args=t.get('backend_args'))
    if t.type == 'LoadImageFromFile' else
    dict(t, reduced_scale_decode=True) if t.type == 'MultiViewWithMask' else t
    for t in _base_.train_pipeline
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
