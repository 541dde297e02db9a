"""Export the backbone of an HVP-MTL pre-training checkpoint for fine-tuning.

``--format mmpretrain`` (default) writes ``{'state_dict': {'backbone.*': ...},
'meta': ...}`` for mmpretrain / mmdet / mmseg configs
(:mod:`hvp_mtl.apis.backbone_export`); ``--format timm`` writes the same
backbone in timm's layout for ``swin_{tiny,small,base}_patch4_window7_224`` /
``vit_base_patch16_224`` (:mod:`hvp_mtl.apis.timm_export`); ``--format hf`` writes a
timm model directory (``config.json``, ``model.safetensors``, a model card ``README.md``)
that ``timm.create_model('local-dir:DIR', pretrained=True)`` loads
(:mod:`hvp_mtl.apis.hf_export`); ``--safetensors`` adds a ``.safetensors`` copy of the
mmpretrain export. The ``.pth`` files load with
``torch.load(weights_only=True)`` and print a report of the kept and dropped
keys. ``--weights auto`` (default) exports the EMA teacher of an HVP-MTL checkpoint and the
online encoder of an MCL one (as MCL's official converter); ``teacher`` the EMA teacher /
momentum encoder, ``student`` the network that received the gradients (see the module
docstrings). One entry point for the three
formats: :func:`hvp_mtl.apis.checkpoint_export.export_checkpoint`.

Usage::

    python tools/model_converters/hvp_to_backbone.py \\
        work_dirs/hvp_swin-b/epoch_30.pth work_dirs/hvp_swin-b/backbone.pth
    python tools/model_converters/hvp_to_backbone.py --format timm \\
        work_dirs/hvp_swin-b/epoch_30.pth work_dirs/hvp_swin-b/backbone_timm.pth
    python tools/model_converters/hvp_to_backbone.py --format hf \\
        work_dirs/hvp_swin-b/epoch_30.pth work_dirs/hvp_swin-b/hf
    python tools/model_converters/hvp_to_backbone.py --safetensors \\
        work_dirs/hvp_swin-b/epoch_30.pth work_dirs/hvp_swin-b/backbone.pth
    python tools/model_converters/hvp_to_backbone.py --format mmdet-mcl \\
        work_dirs/mcl_r50/epoch_100.pth work_dirs/mcl_r50/detector.pth
"""
import argparse
import sys

from hvp_mtl.apis.checkpoint_export import EXPORT_FORMATS, export_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export the backbone of an HVP-MTL pre-training checkpoint '
        '(mmpretrain or timm key layout).')
    parser.add_argument('src', help='pre-training checkpoint (mmengine .pth)')
    parser.add_argument('dst', help='output backbone checkpoint (.pth); with --format hf the '
                        'output directory')
    parser.add_argument(
        '--weights', choices=['auto', 'teacher', 'student'], default='auto',
        help='auto (default): the EMA teacher of HVP-MTL, the online encoder of MCL (as its '
        'official converter); teacher: the EMA teacher / momentum encoder; student: the '
        'network that received the gradients')
    parser.add_argument(
        '--format', choices=EXPORT_FORMATS, default='mmpretrain',
        help='mmpretrain: {"state_dict": {"backbone.*": ...}} for mmpretrain / '
        'mmdet / mmseg configs (default); timm: the state dict of the matching '
        'timm model (create_model(NAME, num_classes=0)); hf: a timm model directory '
        '(config.json, model.safetensors, README.md model card) for '
        'create_model("local-dir:DIR", pretrained=True); mmdet-mcl: backbone, FPN '
        'and cell-head convs of an MCL checkpoint for a 4conv1fc mmdet detector')
    parser.add_argument(
        '--safetensors', action='store_true',
        help='--format mmpretrain: also write the state dict as DST with .safetensors '
        '(safetensors.torch.load_file gives {"backbone.*": tensor})')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        export_checkpoint(args.src, args.dst, args.weights, args.format,
                          safetensors=args.safetensors)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f'error: {err}')


if __name__ == '__main__':
    main()
