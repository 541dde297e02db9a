"""kNN probe: numerics against DINO's classifier, the tool on the demo world's
classification split (single process and 2-process gloo), and the hook in a
short pre-training run."""
import importlib.util
import json

import pytest
import torch
import torch.nn.functional as F

import hvp_mtl  # noqa: F401
from hvp_mtl.evaluation import knn_neighbours, topk_accuracy, weighted_knn_scores
from tests.helpers.eval_helpers import ROOT, metric_at, short_pretraining, torchrun


def dino_knn_classifier(train_features, train_labels, test_features,
                        test_labels, k, T, num_classes):
    """DINO's ``eval_knn.knn_classifier`` (facebookresearch/dino), verbatim
    up to the chunk count."""
    top1, top5, total = 0.0, 0.0, 0
    train_features = train_features.t()
    num_test_images, num_chunks = test_labels.shape[0], 4
    imgs_per_chunk = num_test_images // num_chunks
    retrieval_one_hot = torch.zeros(k, num_classes).to(train_features.device)
    for idx in range(0, num_test_images, imgs_per_chunk):
        features = test_features[idx:min((idx + imgs_per_chunk),
                                         num_test_images), :]
        targets = test_labels[idx:min((idx + imgs_per_chunk), num_test_images)]
        batch_size = targets.shape[0]
        similarity = torch.mm(features, train_features)
        distances, indices = similarity.topk(k, largest=True, sorted=True)
        candidates = train_labels.view(1, -1).expand(batch_size, -1)
        retrieved_neighbors = torch.gather(candidates, 1, indices)
        retrieval_one_hot.resize_(batch_size * k, num_classes).zero_()
        retrieval_one_hot.scatter_(1, retrieved_neighbors.view(-1, 1), 1)
        distances_transform = distances.clone().div_(T).exp_()
        probs = torch.sum(
            torch.mul(
                retrieval_one_hot.view(batch_size, -1, num_classes),
                distances_transform.view(batch_size, -1, 1),
            ),
            1,
        )
        _, predictions = probs.sort(1, True)
        correct = predictions.eq(targets.data.view(-1, 1))
        top1 = top1 + correct.narrow(1, 0, 1).sum().item()
        top5 = top5 + correct.narrow(1, 0, min(5, k)).sum().item()
        total += targets.size(0)
    return top1 * 100.0 / total, top5 * 100.0 / total


def test_knn_matches_dino_reference():
    g = torch.Generator().manual_seed(0)
    num_classes, dim = 7, 16
    centres = torch.randn(num_classes, dim, generator=g)
    train_labels = torch.randint(num_classes, (200, ), generator=g)
    test_labels = torch.randint(num_classes, (64, ), generator=g)
    train = F.normalize(centres[train_labels] +
                        1.5 * torch.randn(200, dim, generator=g), dim=1)
    test = F.normalize(centres[test_labels] +
                       1.5 * torch.randn(64, dim, generator=g), dim=1)
    ref_top1, ref_top5 = dino_knn_classifier(train, train_labels, test,
                                             test_labels, 20, 0.07,
                                             num_classes)
    sims, labels = knn_neighbours(test, train, train_labels, k=20,
                                  chunk_size=9)
    scores = weighted_knn_scores(sims, labels, num_classes, 0.07)
    ours = topk_accuracy(scores, test_labels)
    assert ours['top1'] == pytest.approx(ref_top1)
    assert ours['top5'] == pytest.approx(ref_top5)
    assert 100.0 / num_classes < ours['top1'] < 100.0  # a real, non-trivial task


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    return short_pretraining(tmp_path_factory)


def _probe_args(run, out, ckpt=None):
    cls = run['world'] / 'cls'
    return [str(run['cfg_file']), str(ckpt or run['ckpt']), '--train',
            str(cls / 'train'), '--val', str(cls / 'meta' / 'val.txt'),
            '--val-prefix', str(cls / 'val'), '--img-size', '64',
            '--batch-size', '32', '--num-workers', '0', '--out', str(out)]


@pytest.fixture(scope='module')
def cfg_file(run, tmp_path_factory):
    path = tmp_path_factory.mktemp('knn_cfg') / 'tiny_hvp_swin.py'
    run['cfg'].dump(str(path))
    run['cfg_file'] = path
    return path


def _probe_in_process(args):
    """``tools/analysis_tools/knn_probe.py ARGS`` in this process (its stdout to capsys)."""
    spec = importlib.util.spec_from_file_location(
        'knn_probe_tool', ROOT / 'tools' / 'analysis_tools' / 'knn_probe.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool.main(args)


@pytest.mark.slow
def test_knn_probe_tool_reports_top1_above_chance(run, cfg_file, tmp_path,
                                                  capsys):
    out = tmp_path / 'init.json'
    _probe_in_process(_probe_args(run, out, run['init_ckpt']))
    assert 'kNN probe (k=20, T=0.07, student): top1' in capsys.readouterr().out
    result = json.loads(out.read_text())
    trained = metric_at(run['scalars'], 'knn_top1')[run['max_iters']]
    print(f"\nkNN top-1 on the demo world's cls split: initial weights "
          f"{result['top1']:.1f}, after {run['max_iters']} iterations "
          f"{trained:.1f} (chance 16.7)")
    assert result['num_train'] == 360 and result['num_val'] == 120
    assert result['chance'] == pytest.approx(100 / 6)
    assert 0.0 <= result['top1'] <= result['top5'] <= 100.0
    # the config's initial weights already separate the 6 shapes; a probe
    # that mixed up features and labels would sit at chance
    assert result['top1'] > result['chance'] + 10


@pytest.mark.slow
@pytest.mark.dist
def test_knn_probe_tool_under_ddp_equals_single_process(run, cfg_file,
                                                        tmp_path):
    single = _probe_in_process(
        _probe_args(run, tmp_path / 'single.json') + ['--use-teacher'])
    ddp = tmp_path / 'ddp.json'
    torchrun('tools/analysis_tools/knn_probe.py',
             _probe_args(run, ddp) + ['--use-teacher'])
    two = json.loads(ddp.read_text())
    assert single['backbone'] == two['backbone'] == 'teacher'
    assert two['top1'] == pytest.approx(single['top1'])
    assert two['top5'] == pytest.approx(single['top5'])


@pytest.mark.slow
def test_knn_probe_hook_logs_top1_during_pretraining(run):
    top1 = metric_at(run['scalars'], 'knn_top1')
    assert sorted(top1) == [0, 150, run['max_iters']]
    assert all(0.0 <= v <= 100.0 for v in top1.values())
    assert 'kNN probe (student, k=20, T=0.07) at iter 150: top1' in run['log']
    print(f'\nKNNProbeHook knn_top1 by iteration: {top1}')
