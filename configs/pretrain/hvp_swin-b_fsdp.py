# HVP-MTL Swin-B pre-training with parameters, gradients and optimizer state sharded over the
# GPUs (mmengine FlexibleRunner + FSDPStrategy); everything else as hvp_swin-b.py. For larger
# backbones change `model` as usual; see docs/PRETRAIN.md ("FSDP").
_base_ = './hvp_swin-b.py'
custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

runner_type = 'FlexibleRunner'
strategy = dict(
    type='ResumableFSDPStrategy',  # FSDPStrategy + resumable optimizer state (torch>=2.2)
    model_wrapper=dict(
        # one FSDP unit per Swin block (never a whole stage: Swin calls `stage.downsample`
        # outside the stage's forward); the EMA teacher is a copy of the student, so their
        # units line up one to one
        auto_wrap_policy=dict(type='transformer_block_auto_wrap_policy'),
        # the optimizer sees the original parameters: paramwise_cfg (no decay on norms...) works
        use_orig_params=True,
        # all-gather bf16 parameters (half the traffic of fp32), reduce-scatter gradients in fp32;
        # the sharded master weights and the optimizer stay fp32, buffers (EMA teacher state,
        # SwAV queue) keep their dtype
        mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32',
                             buffer_dtype='float32')),
    # one ordinary checkpoint file (gathered on rank 0): same format as the DDP run, exact
    # resume, atomic writes and backbone export work unchanged
    state_dict_cfg='full')

optim_wrapper = dict(type='GuardedAmpOptimWrapper', use_fsdp=True)
