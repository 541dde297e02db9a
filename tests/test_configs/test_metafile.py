"""metafile.yml / model-index.yml: they parse, every named config exists, every shipped config is
named, the metadata matches the configs, and the stated results match the paper tables."""
import pathlib

import pytest
import yaml
from mmengine.config import Config

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHIPPED = sorted(p for kind in ('pretrain', 'finetune', 'demo')
                 for p in (ROOT / 'configs' / kind).rglob('*.py') if '_base_' not in p.parts)


def _metafiles():
    index = yaml.safe_load((ROOT / 'model-index.yml').read_text())
    paths = [ROOT / p for p in index['Import']]
    for path in paths:
        assert path.is_file(), f'model-index.yml imports missing {path}'
    return [yaml.safe_load(p.read_text()) for p in paths]


META = _metafiles()
MODELS = [m for meta in META for m in meta['Models']]
COLLECTIONS = {c['Name']: c for meta in META for c in meta.get('Collections', [])}
BY_NAME = {m['Name']: m for m in MODELS}


def test_models_are_well_formed():
    assert len(BY_NAME) == len(MODELS), 'duplicate model names'
    for collection in COLLECTIONS.values():
        assert collection['Paper']['URL'].startswith('https://arxiv.org/abs/')
        assert (ROOT / collection['README']).is_file()
    for model in MODELS:
        assert model['In Collection'] in COLLECTIONS, model['Name']
        config = ROOT / model['Config']
        assert config.is_file(), f'{model["Name"]}: config {model["Config"]} does not exist'
        assert model['Name'] == config.stem, 'MIM finds a model by its config name'
        for name in model.get('Downstream', []):
            assert name in BY_NAME, f'{model["Name"]}: downstream {name} is not a model'


def test_every_shipped_config_is_named():
    named = {(ROOT / m['Config']).resolve() for m in MODELS}
    missing = [str(p.relative_to(ROOT)) for p in SHIPPED if p.resolve() not in named]
    assert not missing, f'configs without a metafile entry: {missing}'


@pytest.mark.parametrize('name', sorted(BY_NAME))
def test_metadata_matches_the_config(name):
    model = BY_NAME[name]
    cfg = Config.fromfile(str(ROOT / model['Config']))
    meta = model['Metadata']
    train_cfg = cfg.train_cfg
    if 'Epochs' in meta:
        assert train_cfg['max_epochs'] == meta['Epochs']
    if 'Iterations' in meta:
        assert train_cfg['max_iters'] == meta['Iterations']
    scale = cfg.get('auto_scale_lr') or {}
    if 'base_batch_size' in scale and 'Batch Size' in meta:
        assert scale['base_batch_size'] == meta['Batch Size']


def test_stated_results_are_the_papers():
    tables = yaml.safe_load((ROOT / 'tools' / 'paper_tables.yml').read_text())['tables']
    paper = {}
    for table in tables:
        for row in table['rows']:
            if row.get('config') and row.get('paper'):
                paper[pathlib.Path(row['config']).stem] = set(row['paper'].values())
    for model in MODELS:
        for result in model.get('Results') or []:
            values = set(result['Metrics'].values())
            assert values <= paper.get(model['Name'], set()), \
                f'{model["Name"]}: {values} is not a number the paper states for this row'


def test_paper_tables_name_existing_configs():
    tables = yaml.safe_load((ROOT / 'tools' / 'paper_tables.yml').read_text())['tables']
    for table in tables:
        for row in table['rows']:
            for key in ('config', 'pretrain'):
                if row.get(key):
                    assert (ROOT / row[key]).is_file(), f'paper_tables.yml {row["id"]}: {row[key]}'
