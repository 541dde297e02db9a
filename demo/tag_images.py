"""Tag images with a pre-trained HVP-MTL model: top-k class names + scores.

    python demo/tag_images.py CONFIG CHECKPOINT IMG_OR_DIR [--topk 10]
        [--threshold T] [--out results.json] [--device cpu|cuda]
        [--dictionary dictionary_and_semantic_hierarchy.txt] [--use-teacher]
        [--batch-size 8] [--cfg-options k=v ...]

A folder is tagged image by image (files with image extensions, sorted, not
recursive); files that cannot be decoded are skipped, counted and named in
the log. ``--out`` writes ``{image path: [{"class", "index", "score"}, ...]}``
as JSON (atomically).
"""
import argparse
import json
import os
import os.path as osp

from mmcv.image import imread
from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger

from hvp_mtl.utils.atomic_io import atomic_write  # noqa: E402

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.pgm', '.tif',
                    '.tiff', '.webp')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Tag images with a pre-trained HVP-MTL model')
    parser.add_argument('config', help='pre-training config file')
    parser.add_argument('checkpoint', help='pre-training checkpoint')
    parser.add_argument('images', help='an image file or a folder of images')
    parser.add_argument('--topk', type=int, default=10,
                        help='tags per image (default 10)')
    parser.add_argument('--threshold', type=float, default=None,
                        help='only tags with a score at least this')
    parser.add_argument('--out', help='write the tags to this JSON file')
    parser.add_argument('--device', default='cpu', help='cpu, cuda, cuda:1')
    parser.add_argument('--dictionary', default=None,
                        help='dictionary_and_semantic_hierarchy.txt (default: '
                        'the class names saved in the checkpoint)')
    parser.add_argument('--use-teacher', action='store_true',
                        help='score with the EMA teacher')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs')
    return parser.parse_args(argv)


def list_images(path: str) -> list:
    """The image itself, or the image files of a folder (sorted)."""
    if osp.isdir(path):
        files = sorted(f for f in os.listdir(path)
                       if f.lower().endswith(IMAGE_EXTENSIONS))
        return [osp.join(path, f) for f in files]
    if not osp.isfile(path):
        raise FileNotFoundError(f'no image or folder at {path}')
    return [path]


def write_json_atomic(obj, path: str) -> None:
    """Write JSON to a temporary file in the same folder, then rename."""
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2)


def main(argv=None):
    args = parse_args(argv)
    from hvp_mtl.apis import ImageTagger

    logger = MMLogger.get_instance('tag_images', log_level='INFO')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    tagger = ImageTagger(cfg, args.checkpoint, device=args.device,
                         dictionary_file=args.dictionary,
                         use_teacher=args.use_teacher)

    paths, arrays, skipped = [], [], []
    for path in list_images(args.images):
        try:
            img = imread(path) if osp.getsize(path) > 0 else None
        except Exception:  # a decoder error is a skip, like a None
            img = None
        if img is None:
            skipped.append(path)
            continue
        paths.append(path)
        arrays.append(img)
    if skipped:
        logger.warning(f'skipped {len(skipped)} unreadable image(s): '
                       + ', '.join(skipped[:20]))
    results = {}
    for start in range(0, len(arrays), args.batch_size):
        batch = arrays[start:start + args.batch_size]
        tags = tagger.tag(batch, topk=args.topk, threshold=args.threshold,
                          batch_size=len(batch))
        for path, tag in zip(paths[start:start + args.batch_size], tags):
            results[path] = [
                dict(**{'class': name}, index=index, score=score)
                for name, index, score in zip(
                    tag['pred_class'], tag['pred_label'], tag['pred_score'])
            ]
            print(f'{path}: ' + ', '.join(
                f'{t["class"]} ({t["score"]:.3f})' for t in results[path]))
    logger.info(f'tagged {len(results)} image(s), skipped {len(skipped)}')
    if args.out:
        write_json_atomic(results, args.out)
        logger.info(f'wrote {args.out}')
    return results


if __name__ == '__main__':
    main()
