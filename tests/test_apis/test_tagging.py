"""Image tagging with a pre-training checkpoint: the ``ImageTagger`` API and
``demo/tag_images.py`` on generated images."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.eval_helpers import short_pretraining

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    run = short_pretraining(tmp_path_factory)
    cfg_file = tmp_path_factory.mktemp('tag_cfg') / 'tiny_hvp_swin.py'
    run['cfg'].dump(str(cfg_file))
    return dict(run, cfg_file=cfg_file,
                dictionary=run['world'] / 'pretrain' /
                'dictionary_and_semantic_hierarchy.txt')


@pytest.fixture(scope='module')
def scene_image():
    """A new demo-world scene (BGR uint8, 64 px), not in any split."""
    from hvp_mtl.datasets.demo_world import render_scene, sample_scene
    rng = np.random.default_rng(2024)
    image, _ = render_scene(sample_scene(rng, 64, 2), rng)
    return np.ascontiguousarray(image[..., ::-1])


def _dictionary_names(path):
    from hvp_mtl.datasets import read_dictionary
    return [e.name for e in read_dictionary(str(path))]


def test_tag_images_tool_prints_class_names(run, scene_image, tmp_path,
                                            capfd):
    folder = tmp_path / 'images'
    folder.mkdir()
    Image.fromarray(scene_image[..., ::-1]).save(folder / 'scene.png')
    (folder / 'broken.jpg').write_bytes(b'not a jpeg at all')
    (folder / 'notes.txt').write_text('not an image')
    out = tmp_path / 'tags.json'
    from demo.tag_images import main
    main([str(run['cfg_file']), str(run['ckpt']), str(folder), '--topk', '5',
          '--dictionary', str(run['dictionary']), '--out', str(out)])
    proc = capfd.readouterr()
    names = _dictionary_names(run['dictionary'])
    key = str(folder / 'scene.png') + ': '
    # the tool's line, wherever a log handler left the cursor before it
    lines = [ln[ln.index(key):] for ln in (proc.out + proc.err).splitlines() if key in ln]
    assert len(lines) == 1, (proc.out.splitlines()[-20:], proc.err.splitlines()[-20:])
    line = lines[0]
    printed = [t.rsplit(' (', 1)[0] for t in line.split(': ', 1)[1].split(', ')
               if ' (' in t]
    print(f'\n{line}')
    assert len(printed) == 5 and set(printed) <= set(names)
    assert 'skipped 1 unreadable image(s)' in proc.out + proc.err
    tags = json.loads(out.read_text())
    assert list(tags) == [str(folder / 'scene.png')]
    scores = [t['score'] for t in tags[str(folder / 'scene.png')]]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert [t['class'] for t in tags[str(folder / 'scene.png')]] == printed
    assert all(names[t['index']] == t['class']
               for t in tags[str(folder / 'scene.png')])


def test_image_tagger_api(run, scene_image):
    from hvp_mtl.apis import ImageTagger
    tagger = ImageTagger(run['cfg'], str(run['ckpt']), device='cpu')
    # class names come from the checkpoint's dataset_meta by default ...
    assert tagger.classes == _dictionary_names(run['dictionary'])
    top3 = tagger.tag(scene_image, topk=3)[0]
    assert len(top3['pred_class']) == 3
    assert top3['pred_score'] == sorted(top3['pred_score'], reverse=True)
    assert [tagger.classes[i] for i in top3['pred_label']] == top3['pred_class']
    # ... a threshold keeps every score above it and nothing else
    sample = tagger(scene_image, return_datasamples=True)[0]
    thr = float(sample.pred_score.median())
    above = tagger.tag(scene_image, topk=None, threshold=thr)[0]
    assert len(above['pred_label']) == int((sample.pred_score >= thr).sum())
    assert min(above['pred_score']) >= thr - 1e-6
    # the same numbers as the val pipeline + HVPMTL.predict, batched or not
    batch = tagger.tag([scene_image, scene_image[:, ::-1].copy()], topk=3,
                       batch_size=2)
    assert batch[0]['pred_label'] == top3['pred_label']
    assert batch[0]['pred_score'] == pytest.approx(top3['pred_score'],
                                                   abs=1e-5)
    # the EMA teacher is a different model after 40 iterations
    teacher = ImageTagger(run['cfg'], str(run['ckpt']), device='cpu',
                          use_teacher=True,
                          dictionary_file=str(run['dictionary']))
    teacher_scores = teacher(scene_image, return_datasamples=True)[0]
    assert not torch.allclose(teacher_scores.pred_score, sample.pred_score)


def test_image_tagger_rejects_an_unreadable_file(run, tmp_path):
    from hvp_mtl.apis import ImageTagger
    bad = tmp_path / 'bad.jpg'
    bad.write_bytes(b'\x00garbage')
    tagger = ImageTagger(run['cfg'], str(run['ckpt']), device='cpu')
    with pytest.raises(ValueError, match='bad.jpg'):
        tagger.tag(str(bad))


def test_a_config_without_test_dataloader_tags_with_the_default_pipeline(run, scene_image):
    """The demo pre-training config sets ``test_dataloader = None``; tagging then uses the
    default resize + centre-crop pipeline at the backbone's size."""
    from hvp_mtl.apis import ImageTagger
    cfg = run['cfg'].copy()
    cfg.test_dataloader = None
    tagger = ImageTagger(cfg, str(run['ckpt']), device='cpu')
    names = [type(t).__name__ for t in tagger.pipeline.transforms]
    assert 'ResizeEdge' in names and 'CenterCrop' in names, names
    top = tagger.tag(scene_image, topk=3)[0]
    assert len(top['pred_class']) == 3 and set(top['pred_class']) <= set(tagger.classes)
