"""What the loader workers' forkserver imports when it starts (``MixedDataModule``'s preload list), and
nothing else imports: torch and the streams, so each worker it forks starts without importing them again,
and the stop-signal policy (``datamodules.streams.ignore_stop_signals``).

The forkserver ignores SIGTERM and SIGUSR1 because a cluster signals the whole process group: torch's workers
exit when their parent changes, and the forkserver is their parent, so a forkserver killed by the signal would
take the workers down before the trainer saves (``callbacks.preemption``). It still exits with the trainer
(multiprocessing closes its pipe), and the workers it forks inherit the policy. ``MixedDataModule.setup``
waits for it, so it is in place before a run's first step.
"""
import torch  # noqa: F401

from datamodules.streams import ignore_stop_signals

ignore_stop_signals(-1)
