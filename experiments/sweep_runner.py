"""Running a sweep's members, each as its own `python train.py` process: a member never
started (or one that failed before its first checkpoint) starts from its config, one stopped
part-way resumes with `train.py -r <its run folder>`, a finished one is skipped. `jobs`
members run at a time. A stop signal is passed on to the running members, which save a
checkpoint; no new member starts."""
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from run.checkpoints import best_checkpoint
from run.status import SWEEP_ENV, SWEEP_PID_ENV

from .sweep_manifest import MEMBER_OUTPUT, member_config_path, member_state, resumable_checkpoint

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class SweepRunner:
    def __init__(self, sweep_dir, manifest, jobs=1, run_test=False, take_over=False, devices=None):
        """take_over: run a member even when its status says "running" (a scheduler that
        assigns each member to one task knows the earlier task is gone). devices: GPU ids
        handed out to the running members in turn (each gets one; with more jobs than GPUs,
        members share them)."""
        self.take_over = take_over
        self.free_devices, self.hands_out_devices = queue.Queue(), bool(devices)
        for slot in range(jobs if devices else 0):
            self.free_devices.put(devices[slot % len(devices)])
        self.sweep_dir, self.manifest = Path(sweep_dir), manifest
        self.name = manifest["name"]
        self.jobs, self.run_test = jobs, run_test
        self.stop_signal = None
        self.running = set()  # Popen objects of the members now training
        self.lock = threading.Lock()
        self.outcomes = {}  # member index -> final state

    def run(self, indices=None):
        """Run the members (all, or those `indices`); return {index: state} for each."""
        members = [m for m in self.manifest["members"] if indices is None or m["index"] in indices]
        previous = self._install_signal_handlers()
        try:
            with ThreadPoolExecutor(max_workers=self.jobs) as pool:
                list(pool.map(self._run_member, members))
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self.outcomes

    def _run_member(self, member):
        index, total = member["index"], len(self.manifest["members"])
        state, run = member_state(self.sweep_dir, member, self.name)
        label = f"[{index + 1}/{total}] {member['folder']}"
        if state == "finished" or (state == "running" and not self.take_over) or self.stop_signal:
            print(f"{label}: {state}{', skipped' if state != 'pending' else ''}", flush=True)
            self.outcomes[index] = state
            return
        command = self._train_command(member, state)
        print(f"{label}: {'resuming' if '-r' in command else 'starting'}; output in "
              f"{self.sweep_dir / member['folder'] / MEMBER_OUTPUT}", flush=True)
        started = time.monotonic()
        self._run_process(member, command)
        state, run = member_state(self.sweep_dir, member, self.name)
        best = best_checkpoint(run.models_dir) if run is not None else None
        if state == "finished" and self.run_test and best is not None:
            self._run_process(member, [sys.executable, str(PROJECT_ROOT / "test.py"), "-r", str(best)])
        self.outcomes[index] = state
        where = run.models_dir if run is not None else "no run folder"
        print(f"{label}: {state} after {time.monotonic() - started:.0f} s ({where})", flush=True)

    def _train_command(self, member, state):
        train = [sys.executable, str(PROJECT_ROOT / "train.py")]
        checkpoint = resumable_checkpoint(self.sweep_dir, member, self.name) if state != "pending" else None
        if checkpoint is not None:  # plain resume of the run folder: the run goes on where it stopped
            return [*train, "-r", str(checkpoint.parent)]
        return [*train, "-c", str(member_config_path(self.sweep_dir, member))]

    def _run_process(self, member, command):
        env = {**os.environ, SWEEP_ENV: f"{self.sweep_dir}#{member['index']}", SWEEP_PID_ENV: str(os.getpid())}
        if "OMP_NUM_THREADS" not in os.environ:  # members side by side share the cores
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.jobs))
        device = self.free_devices.get() if self.hands_out_devices else None
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        try:
            return self._run_logged(member, command, env)
        finally:
            if device is not None:
                self.free_devices.put(device)

    def _run_logged(self, member, command, env):
        with open(self.sweep_dir / member["folder"] / MEMBER_OUTPUT, "a") as output:
            output.write(f"$ {' '.join(command)}\n")
            output.flush()
            # a session of its own: a Ctrl-C in the terminal reaches the sweep, which passes it on once
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True)
            with self.lock:
                self.running.add(process)
                if self.stop_signal:  # the stop came while this one was starting
                    process.send_signal(self.stop_signal)
            process.wait()
            with self.lock:
                self.running.discard(process)
        return process.returncode

    def _install_signal_handlers(self):
        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[signum] = signal.signal(signum, self._on_stop_signal)
            except ValueError:  # not the main thread
                pass
        return previous

    def _on_stop_signal(self, signum, frame):
        self.stop_signal = signum
        print(f"Received {signal.Signals(signum).name}: the running members save a checkpoint and stop; "
              "no new member starts.", file=sys.stderr, flush=True)
        with self.lock:
            for process in self.running:
                process.send_signal(signum)
