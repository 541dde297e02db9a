"""Masked Swin / ViT: equal to mmpretrain's parents unmasked, right at every stage masked."""
import pytest
import torch
from mmpretrain.models import SwinTransformer, VisionTransformer

from hvp_mtl.models.backbones import MaskedSwinTransformer, MaskedViT

SWIN = dict(arch=dict(embed_dims=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4]),
            img_size=64, window_size=2, drop_path_rate=0.)
VIT = dict(arch=dict(embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=64),
           img_size=64, patch_size=16)
SWIN_OUT_INDICES = [(0, ), (1, ), (2, ), (3, ), (0, 1, 2, 3)]
VIT_OUT_INDICES = [[0], [1], [2], [0, 1, 2]]


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _randomise(module):
    """Non-trivial weights (bias tables, norms and tokens are zeros/ones at init)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return module


def _pair(parent_cls, masked_cls, masked_kwargs=None, **kwargs):
    torch.manual_seed(0)
    parent = _randomise(parent_cls(**kwargs))
    masked = masked_cls(**kwargs, **(masked_kwargs or {}))
    parent.eval()  # mmpretrain's Swin.train() returns None: no chaining
    masked.eval()
    result = masked.load_state_dict(parent.state_dict(), strict=False)
    assert result.missing_keys == ['mask_token'] and not result.unexpected_keys
    with torch.no_grad():
        masked.mask_token.normal_()
    return parent, masked


def _random_mask(batch, size, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, size, size, generator=g) < 0.5).long()


@pytest.mark.parametrize('use_sdpa', [False, True], ids=['mmpretrain-attn', 'sdpa'])
@pytest.mark.parametrize('out_indices', SWIN_OUT_INDICES, ids=str)
def test_swin_equals_parent_unmasked(out_indices, use_sdpa):
    # use_sdpa: same keys, window attention through F.scaled_dot_product_attention
    parent, masked = _pair(SwinTransformer, MaskedSwinTransformer, dict(use_sdpa=use_sdpa),
                           out_indices=out_indices, **SWIN)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = parent(x)
        unmasked = masked(x)
        zero_mask = masked(x, torch.zeros(2, 16, 16))  # masked path, nothing masked
    assert len(expected) == len(unmasked) == len(zero_mask) == len(out_indices)
    atol = 1e-5 if use_sdpa else 0.
    for ref, out, out_zero in zip(expected, unmasked, zero_mask):
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, atol=atol, rtol=atol)
        torch.testing.assert_close(out_zero, ref, atol=atol, rtol=atol)


def test_swin_masked_all_stages_shapes_and_gradients():
    model = MaskedSwinTransformer(out_indices=(0, 1, 2, 3), **SWIN)
    model.init_weights()
    outs = model(torch.randn(2, 3, 64, 64), _random_mask(2, 16))
    assert [tuple(o.shape) for o in outs] == [(2, 16, 16, 16), (2, 32, 8, 8),
                                              (2, 64, 4, 4), (2, 128, 2, 2)]
    sum(o.square().mean() for o in outs).backward()
    for i in range(4):  # mmpretrain's SimMIM Swin never trains norm0..norm2
        assert getattr(model, f'norm{i}').weight.grad.abs().sum() > 0
    assert model.mask_token.grad.abs().sum() > 0


def test_swin_state_dict_is_parent_plus_mask_token():
    parent = SwinTransformer(out_indices=(0, 1, 2, 3), **SWIN)
    masked = MaskedSwinTransformer(out_indices=(0, 1, 2, 3), **SWIN)
    assert set(masked.state_dict()) == set(parent.state_dict()) | {'mask_token'}
    for key, value in parent.state_dict().items():
        assert masked.state_dict()[key].shape == value.shape


def _first_block_input(model, block, x, mask):
    captured = {}

    def hook(module, args):
        captured['x'] = args[0]  # returns None: the inputs are left alone

    handle = block.register_forward_pre_hook(hook)
    with torch.no_grad():
        model(x, mask)
    handle.remove()
    return captured['x']


@pytest.mark.parametrize('kind', ['swin', 'vit'])
def test_mask_token_replaces_only_masked_tokens(kind):
    if kind == 'swin':
        _, model = _pair(SwinTransformer, MaskedSwinTransformer, **SWIN)
        block, grid, extra = model.stages[0], 16, 0
    else:
        _, model = _pair(VisionTransformer, MaskedViT, out_type='featmap', **VIT)
        block, grid, extra = model.layers[0], 4, 1  # + class token
    x = torch.randn(2, 3, 64, 64)
    mask = _random_mask(2, grid)
    plain = _first_block_input(model, block, x, None)
    masked = _first_block_input(model, block, x, mask)
    changed = (plain - masked).abs().amax(-1)[:, extra:].reshape(2, grid, grid) > 0
    assert torch.equal(changed, mask.bool())


@pytest.mark.parametrize('out_type', ['featmap', 'cls_token', 'raw'])
@pytest.mark.parametrize('out_indices', VIT_OUT_INDICES, ids=str)
def test_vit_equals_parent_unmasked(out_indices, out_type):
    parent, masked = _pair(VisionTransformer, MaskedViT, out_indices=list(out_indices),
                           out_type=out_type, **VIT)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, unmasked = parent(x), masked(x)
        zero_mask = masked(x, torch.zeros(2, 4, 4))
    assert len(expected) == len(unmasked) == len(out_indices)
    for ref, out, out_zero in zip(expected, unmasked, zero_mask):
        torch.testing.assert_close(out, ref, atol=0., rtol=0.)
        torch.testing.assert_close(out_zero, ref, atol=1e-6, rtol=1e-6)


def test_vit_masked_shapes_and_state_dict():
    parent = VisionTransformer(out_type='featmap', **VIT)
    model = MaskedViT(out_type='featmap', **VIT)
    assert set(model.state_dict()) == set(parent.state_dict()) | {'mask_token'}
    model.init_weights()
    out = model(torch.randn(2, 3, 64, 64), _random_mask(2, 4))
    assert len(out) == 1 and out[0].shape == (2, 32, 4, 4)
    out[0].mean().backward()
    assert model.mask_token.grad.abs().sum() > 0


@pytest.mark.parametrize('kind', ['swin', 'vit'])
def test_gradient_checkpointing_gives_same_gradients(kind):
    if kind == 'swin':
        cls, kwargs, grid = MaskedSwinTransformer, dict(SWIN, out_indices=(0, 1, 2, 3)), 16
    else:
        cls, kwargs, grid = MaskedViT, dict(VIT, out_type='featmap'), 4
    torch.manual_seed(0)
    plain = cls(**kwargs)
    plain.init_weights()
    ckpt = cls(with_cp=True, **kwargs)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    mask = _random_mask(2, grid)
    grads = []
    for model in (plain, ckpt):
        model.train()
        sum(o.square().mean() for o in model(x, mask)).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize('shift', [0, 2], ids=['regular', 'shifted'])
def test_sdpa_window_attention_equals_mmpretrain_window_msa(shift):
    """SDPAWindowMSA inside mmpretrain's ShiftWindowMSA equals its WindowMSA:
    outputs and every gradient (relative position bias table included)."""
    from mmpretrain.models.utils.attention import ShiftWindowMSA

    from hvp_mtl.models.backbones.sdpa_window_msa import SDPAWindowMSA
    cfg = dict(embed_dims=32, num_heads=4, window_size=4, shift_size=shift)
    reference = _randomise(ShiftWindowMSA(**cfg))
    ours = ShiftWindowMSA(**cfg, window_msa=SDPAWindowMSA)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(3, 12 * 12, 32)  # 9 windows of 4 x 4 per image
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected, out = reference(x_ref, (12, 12)), ours(x_ours, (12, 12))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    weights = torch.randn_like(out)
    (expected * weights).sum().backward()
    (out * weights).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, atol=1e-5, rtol=1e-5)
    grads = dict(reference.named_parameters())
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, grads[name].grad, atol=1e-5, rtol=1e-5,
                                   msg=lambda m, n=name: f'{n}: {m}')


def test_every_sdpa_call_of_a_swin_forward_is_4d(monkeypatch):
    """PyTorch's fused (flash / memory-efficient) kernels take 4-D q/k/v only;
    a 5-D call falls back to the math kernel, which materialises the map."""
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def recording(query, key, value, attn_mask=None, **kwargs):
        calls.append((tuple(query.shape), tuple(key.shape), tuple(value.shape),
                      None if attn_mask is None else tuple(attn_mask.shape)))
        return original(query, key, value, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(torch.nn.functional, 'scaled_dot_product_attention', recording)
    torch.manual_seed(0)
    model = MaskedSwinTransformer(use_sdpa=True, out_indices=(3, ), **SWIN)
    model(torch.randn(2, 3, 64, 64), _random_mask(2, 16))[-1].sum().backward()
    assert len(calls) == sum(SWIN['arch']['depths'])  # one call per block
    assert not [c for c in calls if len(c[0]) != 4], calls
    # windows x heads [batch, heads] per block: stage resolutions 16, 8, 4, 2 with
    # window 2; the second block of stages 1-3 is shifted (stage 4 is one window)
    windows_heads = [(2 * 64, 1), (2, 64 * 1), (2 * 16, 2), (2, 16 * 2),
                     (2 * 4, 2), (2, 4 * 2), (2, 4), (2, 4)]
    assert [c[0][:2] for c in calls] == windows_heads
    # bias (+ per-window shift mask folded with the heads), broadcast over axis 0
    assert all(mask == (1, query[1], 4, 4) for query, _, _, mask in calls)
