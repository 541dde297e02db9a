"""Checkpoints that are never half-written, and resume that survives one.

mmengine's ``CheckpointHook`` writes ``iter_N.pth`` in place and then
``last_checkpoint``; a job killed while writing (preemption, a full disk)
leaves a truncated latest checkpoint that ``--resume`` then fails on. It also
deletes the oldest kept checkpoint *before* writing the new one, so with
``max_keep_ckpts=1`` a failed write leaves nothing.

:class:`AtomicCheckpointHook` (a drop-in ``CheckpointHook``):

* writes ``<name>.tmp``, flushes it to disk and ``os.replace``-s it onto
  ``<name>`` (:mod:`hvp_mtl.utils.atomic_io`); ``last_checkpoint`` is
  replaced the same way, only after the checkpoint is complete; old
  checkpoints are pruned only after that;
* announces every save on every rank (the hook event
  ``before_save_checkpoint_all_ranks``), so that
  :class:`~.resume_state_hook.ResumeStateHook` can gather the exact-resume
  state of all ranks for it (``Runner.save_checkpoint`` runs on rank 0 only);
* on automatic resume (``--resume`` without a path) checks the checkpoint
  named by ``last_checkpoint`` (zip structure and CRCs); if it is truncated
  or corrupt it logs a warning and resumes from the newest intact one *that
  the hook wrote*: only names of its ``filename_tmpl`` (``iter_{}.pth`` /
  ``epoch_{}.pth``), newest step first, so an exported ``backbone.pth`` or
  any other ``*.pth`` in the work dir is never taken for a training state.
"""
import logging
import os
import os.path as osp
import re
import zipfile
from typing import List, Optional, Sequence

import torch
from mmengine.dist import broadcast_object_list, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmpretrain.registry import HOOKS

from ...utils.atomic_io import atomic_write, commit_file
from ..runner.resume_state import GATHER_EVENT
from .checkpoint_space import CheckpointWriteError, warn_if_disk_too_small, write_failure

__all__ = [
    'AtomicCheckpointHook', 'is_intact_checkpoint', 'find_intact_checkpoint',
    'CheckpointWriteError'
]


def is_intact_checkpoint(path: str) -> bool:
    """Whether ``path`` is a complete, uncorrupted ``torch.save`` file.

    torch's (default) zip format ends with a central directory, which a
    truncated file lacks, and stores a CRC-32 per record, which
    ``ZipFile.testzip`` verifies. Files in torch's legacy format are checked
    by loading them (weights only).
    """
    if not osp.isfile(path) or osp.getsize(path) == 0:
        return False
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                return archive.testzip() is None
        except (zipfile.BadZipFile, OSError, EOFError):
            return False
    try:
        torch.load(path, map_location='cpu', weights_only=True)
        return True
    except Exception:  # noqa: BLE001 -- any failure means "not usable"
        return False


DEFAULT_FILENAME_TMPLS = ('iter_{}.pth', 'epoch_{}.pth')


def _candidates(directory: str, filename_tmpls: Sequence[str]) -> List[str]:
    """Files of ``directory`` named by one of the checkpoint hook's
    templates (``iter_{}.pth`` -> ``iter_<digits>.pth``), highest step first
    (ties: newest file first)."""
    patterns = [
        re.compile(''.join(re.escape(part) if i % 2 == 0 else r'(\d+)'
                           for i, part in enumerate(
                               re.split(r'(\{[^{}]*\})', tmpl))) + '$')
        for tmpl in filename_tmpls
    ]
    found = []
    for name in os.listdir(directory) if osp.isdir(directory) else []:
        path = osp.join(directory, name)
        for pattern in patterns:
            match = pattern.match(name)
            if match and osp.isfile(path):
                found.append((int(match.group(1)), osp.getmtime(path), path))
                break
    return [path for _, _, path in sorted(found, reverse=True)]


def find_intact_checkpoint(
        work_dir: str,
        filename_tmpls: Sequence[str] = DEFAULT_FILENAME_TMPLS
) -> Optional[str]:
    """The checkpoint to auto-resume from: ``last_checkpoint`` if intact.

    Otherwise the intact checkpoint of the highest step next to it whose
    name follows one of ``filename_tmpls`` (the checkpoint hook's
    ``filename_tmpl``), with a warning; other ``*.pth`` files (an exported
    ``backbone.pth``) are never chosen. Returns None when there is no
    ``last_checkpoint``; raises when none is intact. (``FlexibleRunner``
    resumes before ``before_run``, so ``tools/train.py`` calls this itself
    for FlexibleRunner configs.)

    Args:
        work_dir (str): The run's work dir (holds ``last_checkpoint``).
        filename_tmpls (Sequence[str]): Checkpoint name templates with one
            ``{}`` for the step.
    """
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        latest = f.read().strip()
    if is_intact_checkpoint(latest):
        return latest
    directory = osp.dirname(latest) or work_dir
    for path in _candidates(directory, filename_tmpls):
        if osp.abspath(path) != osp.abspath(latest) and \
                is_intact_checkpoint(path):
            print_log(
                f'The latest checkpoint {latest} (named by {pointer}) is '
                f'truncated or corrupt; resuming from the previous intact '
                f'checkpoint {path} instead.',
                logger='current',
                level=logging.WARNING)
            return path
    raise RuntimeError(
        f'The latest checkpoint {latest} (named by {pointer}) is truncated or '
        f'corrupt and no intact checkpoint named like '
        f'{" or ".join(filename_tmpls)} was found in {directory}; remove '
        f'{pointer} to start from scratch or pass --resume PATH.')


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with atomic writes, safe rotation and fallback.

    Accepts every argument of :class:`mmengine.hooks.CheckpointHook`. Atomic
    writes apply to local directories; other backends are written as by
    mmengine (with a warning). Before the first save it warns when the disk
    cannot hold ``max_keep_ckpts + 1`` checkpoints; a save that fails raises
    :class:`~.checkpoint_space.CheckpointWriteError` after removing its temp
    file (previous checkpoint and ``last_checkpoint`` untouched).
    """

    _space_checked = False

    # ------------------------------------------------------------ resume --
    def before_run(self, runner) -> None:
        """Swap a corrupt auto-resume checkpoint for the newest intact one."""
        super().before_run(runner)
        if runner._resume is not True or runner._load_from is not None:
            return
        # rank 0 reads the files; every rank gets its verdict (or its error)
        choice = [None, None]
        if is_main_process():
            try:
                choice[0] = self._choose_resume_checkpoint(runner.work_dir)
            except RuntimeError as error:
                choice[1] = str(error)
        broadcast_object_list(choice)
        if choice[1] is not None:
            raise RuntimeError(choice[1])
        if choice[0] is not None:
            runner._load_from = choice[0]

    def _choose_resume_checkpoint(self, work_dir: str) -> Optional[str]:
        return find_intact_checkpoint(work_dir, (self.filename_tmpl, ))

    # -------------------------------------------------------------- save --
    def _save_checkpoint_with_step(self, runner, step, meta):
        # runs on every rank: hooks that gather state from all ranks for
        # this checkpoint (ResumeStateHook) do it now
        runner.call_hook(GATHER_EVENT)
        if not isinstance(self.file_backend, LocalBackend):
            print_log(
                'AtomicCheckpointHook: checkpoints on '
                f'{type(self.file_backend).__name__} are written in place.',
                logger='current',
                level=logging.WARNING)
            return super()._save_checkpoint_with_step(runner, step, meta)

        ckpt_filename = self.filename_tmpl.format(step)
        final_path = osp.join(self.out_dir, ckpt_filename)
        expired = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                expired = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        self.last_ckpt = final_path
        runner.message_hub.update_info('last_ckpt', final_path)

        if not self._space_checked and is_main_process():
            self._space_checked = True
            warn_if_disk_too_small(runner, self.out_dir, self.max_keep_ckpts)
        try:
            runner.save_checkpoint(
                self.out_dir,
                f'{ckpt_filename}.tmp',
                self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=self.by_epoch,
                backend_args=self.backend_args,
                **self.args)
            if not is_main_process():
                return
            commit_file(f'{final_path}.tmp', final_path)
        except (OSError, RuntimeError) as err:
            if isinstance(err, RuntimeError) and 'write' not in str(err):
                raise
            raise write_failure(runner, final_path, err) from None
        with atomic_write(osp.join(runner.work_dir, 'last_checkpoint')) as f:
            f.write(final_path)
        if expired is not None and expired != step:
            old = osp.join(self.out_dir, self.filename_tmpl.format(expired))
            if osp.isfile(old):
                os.remove(old)
