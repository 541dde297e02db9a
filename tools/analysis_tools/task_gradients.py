"""How eq. (7)'s weights balance the four tasks on the backbone, for one batch.

    python tools/analysis_tools/task_gradients.py CONFIG [CHECKPOINT]
        [--batch-size 2] [--seed 0] [--json OUT] [--cfg-options K=V ...]

Builds the config's HVP-MTL model (initialised, or loaded from CHECKPOINT; an
EMA teacher that holds no weights yet is copied from the student), takes the
first ``--batch-size`` images of the config's training set through its real
pipeline (two views, the SimMIM mask on view 0), runs one training-mode
forward and prints, for every task with a weight > 0:

* the weighted loss ``alpha_x * L_x`` (eq. 7) and the unweighted ``L_x``;
* ``|grad|``: the L2 norm of ``d(alpha_x L_x) / d(theta)`` over the
  parameters of the backbone's last stage (Swin ``stages[-1]``, ViT
  ``layers[-1]``);
* ``share``: that norm over the sum of the four norms.

If the model scores more classes than the dataset's dictionary holds (e.g.
``--cfg-options model.tasks.mlc.num_classes=11166`` on the demo world), the
targets are zero-padded: the extra classes are negatives of every image. The measurement lives
in :mod:`hvp_mtl.apis.task_gradients`.
"""
import argparse
import json

from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint, set_random_seed
from mmpretrain.registry import MODELS

from hvp_mtl.apis.task_gradients import first_batch, format_table, task_gradient_table


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', help='also write the rows to this file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope('mmpretrain')
    import hvp_mtl  # noqa: F401  (registers the plugin, checkpoint allow-list)
    set_random_seed(args.seed)  # torch, numpy, random: weights, crops, mask
    model = MODELS.build(cfg.model)
    model.init_weights()
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, map_location='cpu',
                        strict=True)
    model.after_train_step(before_training=True)
    model.train()
    num_classes = model.mlc_head.num_classes if model.mlc_head else 0
    data, padded = first_batch(cfg, args.batch_size, num_classes)
    set_random_seed(args.seed)  # drop-path and dropout of the student
    rows = task_gradient_table(model, data)
    print(f'config: {args.config}  checkpoint: {args.checkpoint or "none"}  '
          f'batch: {args.batch_size}  classes: {num_classes}'
          + (f' (targets zero-padded by {padded})' if padded else ''))
    print(format_table(rows))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(config=args.config, checkpoint=args.checkpoint,
                           batch_size=args.batch_size,
                           num_classes=num_classes, padded_classes=padded,
                           rows=rows), f, indent=1)


if __name__ == '__main__':
    main()
