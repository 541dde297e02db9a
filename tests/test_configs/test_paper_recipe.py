"""Every value the paper states (arXiv 2310.07510, §3.2-3.3, §4) pinned in
configs/pretrain/hvp_swin-b.py; each assertion's message is the paper's
sentence. The values the paper does not state are listed, with reasons, in
docs/method.md ("Values the paper does not state")."""
from pathlib import Path

import pytest
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[2]

ALPHAS = ('α1, α2, α3, α4 are the weights for multi-label classification loss, '
          'contrastive loss, reconstruction loss and momentum distillation loss, '
          'and are set as 0.001, 0.02, 1.0 and 10.0 in our implementation, '
          'respectively.')
ASL = ('the parameters for multi-label classification, i.e. η, γ+ and γ−, are '
       'set as 10, 4, 1, respectively.')
KL_OF_SIMILARITIES = ('L_mom = 1/2 E[KL(S(g, Q0) || S(g\', Q0)) + KL(S(g\', Q0) || S(g, Q0))] '
                      '(eq. 6): a KL between the similarity vectors, no temperature')
T_MAX = 'The truncated threshold T_max for Sinkhorn-Knopp is set as 10'
MOMENTUM = ('the momentum parameter for updating the momentum model is set as '
            '0.995.')
SCHEDULE = ('For Swin-B or ViT-B, we pre-train the model for 30 epochs using a '
            'batch size of 1024 on 64 NVIDIA A100 GPUs.')
ADAMW = 'We use the AdamW optimizer with a weight decay of 0.05.'
LR = ('The learning rate is warmed-up to 1e-4 in the first 5 epochs, and '
      'decayed to 1e-7 following a cosine schedule.')
CROPS = ('During pre-training, we take random image crops of resolution '
         '224 × 224 as input, and also apply Randaugment.')
MASK_PATCH = ('For the model Swin, we consider equivalent patch sizes of '
              'different resolution stages, 4×4→32×32, and adopt 32×32 by '
              'default, which is the patch size of the last stage.')
CLASSES = ('The pre-training data with respect to the Tencent-ML dataset '
           'collects about 18 million images with 11,166 categories')
SWIN_B = ('For Swin-B or ViT-B, we pre-train the model ...; an image encoder '
          'with the Swin or ViT backbone is employed')
DECODERS = ('several head decoders with different losses are introduced ..., '
            'including a Transformer decoder for multi-label classification, a '
            'clustering decoder with prototypes for contrastive learning, and a '
            'MIM decoder for reconstructive learning.')


@pytest.fixture(scope='module')
def cfg():
    return Config.fromfile(str(ROOT / 'configs' / 'pretrain' / 'hvp_swin-b.py'))


def _views(cfg):
    """The two view pipelines and the mask generator of MultiViewWithMask."""
    multi_view = next(t for t in cfg.train_pipeline
                      if t['type'] == 'MultiViewWithMask')
    return multi_view['transforms'], multi_view['mask_generator']


def test_loss_weights_of_eq7(cfg):
    assert dict(cfg.model.loss_weights) == dict(
        mlc=0.001, swav=0.02, mim=1.0, distill=10.0), ALPHAS


def test_weighted_asymmetric_loss_parameters(cfg):
    loss = cfg.model.tasks.mlc.loss
    assert loss.type == 'WeightedAsymmetricLoss', ASL
    assert (loss.eta, loss.gamma_pos, loss.gamma_neg) == (10., 4., 1.), ASL


def test_distillation_has_no_temperature(cfg):
    # ALBEF's T = 0.07 is the named variant hvp_swin-b_distill-t0.07.py (docs/method.md)
    assert cfg.model.tasks.distill.loss.temperature == 1.0, KL_OF_SIMILARITIES
    variant = Config.fromfile(str(ROOT / 'configs' / 'pretrain' / 'hvp_swin-b_distill-t0.07.py'))
    assert variant.model.tasks.distill.loss.temperature == 0.07
    variant.model.tasks.distill.loss.temperature = 1.0
    assert variant.model.to_dict() == cfg.model.to_dict()  # nothing else changes


def test_sinkhorn_truncation(cfg):
    assert cfg.model.tasks.swav.loss.t_max == 10., T_MAX


def test_teacher_momentum(cfg):
    assert cfg.model.teacher.momentum == 0.995, MOMENTUM


def test_epochs_and_batch(cfg):
    assert cfg.train_cfg.max_epochs == 30, SCHEDULE
    assert cfg.train_dataloader.batch_size * 64 == 1024, SCHEDULE
    assert cfg.auto_scale_lr.base_batch_size == 1024, SCHEDULE


def test_adamw_weight_decay(cfg):
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'AdamW', ADAMW
    assert optimizer.weight_decay == 0.05, ADAMW


def test_learning_rate_warmup_and_cosine(cfg):
    assert cfg.optim_wrapper.optimizer.lr == 1e-4, LR
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and warmup.by_epoch, LR
    assert (warmup.begin, warmup.end) == (0, 5), LR
    assert warmup.get('end_factor', 1.0) == 1.0, LR  # warmed up *to* 1e-4
    assert cosine.type == 'CosineAnnealingLR' and cosine.by_epoch, LR
    assert (cosine.begin, cosine.end, cosine.T_max) == (5, 30, 25), LR
    assert cosine.eta_min == 1e-7, LR


def test_224_px_random_crops_and_randaugment(cfg):
    views, _ = _views(cfg)
    assert cfg.img_size == 224 and cfg.model.backbone.img_size == 224, CROPS
    for view in views:
        types = [t['type'] for t in view]
        crop = next(t for t in view if t['type'] == 'RandomResizedCrop')
        assert crop['scale'] == 224, CROPS
        assert 'RandAugment' in types, CROPS


def test_32_px_mask_patches(cfg):
    _, mask_generator = _views(cfg)
    assert mask_generator['mask_patch_size'] == 32, MASK_PATCH
    assert mask_generator['model_patch_size'] == 4, MASK_PATCH
    assert mask_generator['input_size'] == 224, MASK_PATCH


def test_11166_classes(cfg):
    assert cfg.num_classes == 11166, CLASSES
    assert cfg.model.tasks.mlc.num_classes == 11166, CLASSES


def test_swin_b_and_the_three_decoders(cfg):
    assert cfg.model.backbone.arch == 'base', SWIN_B
    assert cfg.model.tasks.mlc.type == 'MultiLabelDecoderHead', DECODERS
    assert cfg.model.tasks.swav.type == 'SwAVClusteringHead', DECODERS
    assert cfg.model.tasks.mim.type == 'MIMLinearDecoderHead', DECODERS
