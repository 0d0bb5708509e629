"""trainables.device and the device paths of train(): where a trial trains, what it reports about
it, its GPU memory cap, mixed precision, and out-of-memory failures.

This machine's torch is a CPU build, so the fallback tests are real: a trial given a GPU finds
CUDA unusable. What needs a GPU (the cap's effect, autocast kernels) is not run here; the choices
around it (dtype selection, the resident budget, the OOM conversion, the per-epoch GPU figures)
are tested with the torch.cuda calls they make replaced by stand-ins, and say so.
"""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest
import torch

import trainables.device as device_module
import trainables.train as train_module
from trainables._checkpoint import Progress, load_checkpoint, save_checkpoint
from trainables.data import DataSpec, as_tensors, load_dataset
from trainables.device import DeviceOutOfMemory, GpuMonitor, Placement, amp_dtype, device_report, place
from trainables.device import resident_budget
from trainables.losses import MultiHeadLoss
from trainables.train import repeats_on_retry, train

GIB = 1 << 30
MIB = 1 << 20
SPEC = DataSpec(kind="digits", limit=300, val_fraction=0.2)
CONFIG = {
    "data.kind": "digits", "data.limit": 300, "data.val_fraction": 0.2,
    "model.kind": "mlp", "model.hidden": 16,
    "train.epochs": 2, "train.batch_size": 32, "train.lr": 0.01, "train.threads": 1,
    "heads.digit.loss": "ce", "heads.thickness.loss": "ordinal",
    "objective.metric": "val/acc_mean",
}
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="tests the fallback of a machine without CUDA")


pytestmark = pytest.mark.usefixtures("one_thread")


def _run(config, **kwargs):
    reports = []
    final = train(config, report=reports.append, **kwargs)
    return reports, final


def _metrics(report):
    timings = ("epoch_time_s", "samples_per_s")
    return {k: v for k, v in report.items() if k not in timings and not k.startswith("device/")}


# ---------------------------------------------------------------- the device


@no_cuda
def test_auto_given_a_gpu_without_cuda_warns_and_trains_on_the_cpu():
    with pytest.warns(RuntimeWarning, match=r"was given 0\.5 GPU, but CUDA is unusable \(torch .* without CUDA\)"):
        placement = place("auto", gpu_fraction=0.5)
    assert placement.device == torch.device("cpu") and placement.cap_bytes is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no GPU given, none present: the CPU is the expected place
        assert place("auto", gpu_fraction=None).device.type == "cpu"
        assert place("auto", gpu_fraction=0).device.type == "cpu"
        assert place("cpu", gpu_fraction=0.5).device.type == "cpu"


def test_auto_that_ray_gave_no_gpu_trains_on_the_cpu_where_gpus_are_visible(monkeypatch):
    # Ray leaves a zero-GPU worker's CUDA_VISIBLE_DEVICES alone: every trial of a CPU-only space on a
    # GPU node trained on its first GPU, uncapped and unaccounted for
    monkeypatch.setattr(device_module, "_cuda_problem", lambda: (None, False))

    def first_gpu():
        raise AssertionError("placed on a GPU")

    monkeypatch.setattr(torch.cuda, "current_device", first_gpu)
    assert place("auto", gpu_fraction=0).device == torch.device("cpu")
    assert place("auto", gpu_fraction=0.0).cap_bytes is None
    with pytest.raises(AssertionError, match="placed on a GPU"):  # outside Ray, auto takes a usable GPU
        place("auto", gpu_fraction=None)


@no_cuda
def test_cuda_without_cuda_is_a_value_error():
    with pytest.raises(ValueError, match=r"train.device must be 'cpu' or 'auto' where CUDA is unusable .*got 'cuda'"):
        place("cuda", gpu_fraction=1.0)


@pytest.mark.parametrize("fraction", [-0.5, math.nan, True, "0.5"])
def test_gpu_fraction_must_be_a_number_at_least_zero(fraction):
    with pytest.raises(ValueError, match="gpu_fraction must be a number >= 0 or None, but got"):
        place("cpu", gpu_fraction=fraction)


@no_cuda
def test_a_trial_given_a_gpu_without_cuda_reports_the_cpu_and_trains_the_same():
    with pytest.warns(RuntimeWarning, match="CUDA is unusable"):
        reports, final = _run(CONFIG, gpu_fraction=0.25)
    assert {k: v for k, v in reports[0].items() if k.startswith("device/")} == {
        "device/type": "cpu", "device/name": "cpu", "device/gpu_id": "", "device/amp": "off"}
    assert not any(k.startswith(("device/", "gpu/")) for k in reports[1])  # once; no GPU figures on the CPU
    plain_reports, plain_final = _run(CONFIG)
    assert final == plain_final and [_metrics(r) for r in reports] == [_metrics(r) for r in plain_reports]


def test_device_report_names_the_gpu_by_its_index_on_the_machine(monkeypatch):
    # Ray shows a trial its GPUs as CUDA 0, 1, ...; CUDA_VISIBLE_DEVICES maps them to the node's.
    gpu = Placement(torch.device("cuda", 1), fraction=0.5, total_bytes=80 * GIB, name="Test GPU")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert device_report(gpu, torch.bfloat16) == {
        "device/type": "cuda", "device/name": "Test GPU", "device/gpu_id": "5", "device/amp": "bf16"}
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert device_report(gpu, torch.float16)["device/gpu_id"] == "1"
    assert device_report(gpu, None)["device/amp"] == "off"


# ---------------------------------------------------------------- the data set argument


def test_a_data_set_handed_in_trains_like_one_loaded_and_is_not_changed(monkeypatch):
    loaded_reports, loaded_final = _run(CONFIG)
    data = load_dataset(SPEC)
    labels_before = {name: t.copy() for name, t in data.train.labels.items()}

    def refuse(spec):
        raise AssertionError("train() must not load a data set it was handed")

    monkeypatch.setattr(train_module, "load_dataset", refuse)
    reports, final = _run(CONFIG, data=data)
    assert final == loaded_final
    assert [_metrics(r) for r in reports] == [_metrics(r) for r in loaded_reports]
    # the trial trains 2 of the 3 heads; the caller's data set (shared by trials) keeps all of them
    assert set(data.train.labels) == set(labels_before) == {"digit", "thickness", "smoothness"}
    assert all(np.array_equal(data.train.labels[n], labels_before[n]) for n in labels_before)


def test_a_read_only_data_set_trains_without_a_copy_or_a_warning():
    # What a trial gets from Ray's object store: read-only NumPy arrays, taken by the trainer as
    # tensors over the same memory, without torch's warning about arrays it cannot write.
    loaded_reports, loaded_final = _run(CONFIG)
    data = load_dataset(SPEC)
    for split in (data.train, data.val, data.test):
        for array in (split.images, *split.labels.values()):
            array.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reports, final = _run(CONFIG, data=data)
    assert final == loaded_final
    assert [_metrics(r) for r in reports] == [_metrics(r) for r in loaded_reports]
    tensors = as_tensors(data)
    assert tensors.train.images.data_ptr() == data.train.images.ctypes.data  # shared, not copied


# ---------------------------------------------------------------- the memory cap


def test_the_resident_budget_is_a_share_of_the_trials_cap_not_of_the_free_gpu():
    # Four trials start together on an empty 80 GiB GPU, a quarter each: each sees 80 GiB free.
    assert resident_budget(free=80 * GIB, total=80 * GIB, allocated=0, fraction=0.25) == 5 * GIB
    assert resident_budget(free=80 * GIB, total=80 * GIB, allocated=0, fraction=None) == 20 * GIB  # no cap
    # what the trial holds already counts against its cap
    assert resident_budget(free=70 * GIB, total=80 * GIB, allocated=4 * GIB, fraction=0.25) == 4 * GIB
    # less free than the cap (others on the GPU took it): the free memory bounds it
    assert resident_budget(free=10 * GIB, total=80 * GIB, allocated=0, fraction=0.5) == 2.5 * GIB
    assert resident_budget(free=80 * GIB, total=80 * GIB, allocated=30 * GIB, fraction=0.25) == 0.0


def test_the_cap_of_a_placement():
    assert Placement(torch.device("cuda", 0), fraction=0.25, total_bytes=8 * GIB).cap_bytes == 2 * GIB
    assert Placement(torch.device("cuda", 0), fraction=None, total_bytes=8 * GIB).cap_bytes == 8 * GIB
    assert Placement(torch.device("cpu")).cap_bytes is None
    assert not device_module.keeps_resident([torch.zeros(4)], Placement(torch.device("cpu")))


def test_the_resident_budget_counts_the_training_images_as_the_float32_they_become(monkeypatch):
    # uint8 digits on the CPU: keeps_resident says no, but is asked about the sizes the data would take
    seen = []
    monkeypatch.setattr(device_module, "keeps_resident", lambda tensors, placement: seen.append(list(tensors)))
    _run({**CONFIG, "train.epochs": 1})
    data = as_tensors(load_dataset(SPEC))
    heads = ("digit", "thickness")  # the trained heads: train() keeps only their labels
    expected = sum(t.nelement() * t.element_size() for split in (data.train, data.val, data.test)
                   for t in (split.images, *(split.labels[h] for h in heads)))
    expected += 3 * data.train.images.nelement()  # the training images: 4 bytes each, not 1
    (tensors,) = seen
    assert sum(t.nelement() * t.element_size() for t in tensors) == expected


def _out_of_memory_at_step(monkeypatch, step):
    class OutOfMemoryLoss(MultiHeadLoss):
        calls = 0

        def forward(self, outputs, targets):
            OutOfMemoryLoss.calls += 1
            if OutOfMemoryLoss.calls == step:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return super().forward(outputs, targets)

    monkeypatch.setattr(train_module, "MultiHeadLoss", OutOfMemoryLoss)


def test_out_of_memory_under_a_cap_fails_the_trial_naming_cap_peak_and_what_to_change(monkeypatch):
    # Stand-ins for what only a GPU gives: a placement with a quarter of an 8 GiB GPU, and the peak
    # torch.cuda.max_memory_allocated would read. The out-of-memory error is raised by the loss.
    gpu = Placement(torch.device("cpu"), fraction=0.25, total_bytes=8 * GIB, name="Test GPU")
    monkeypatch.setattr(device_module, "place", lambda setting, *, gpu_fraction: gpu)
    monkeypatch.setattr(device_module, "peak_allocated_bytes", lambda device: int(1.5 * GIB))
    _out_of_memory_at_step(monkeypatch, 12)
    with pytest.raises(DeviceOutOfMemory) as caught:
        _run(CONFIG, gpu_fraction=0.25)
    error = caught.value
    assert (error.device, error.fraction, error.cap_mb, error.peak_mb) == ("Test GPU", 0.25, 2048.0, 1536.0)
    assert "resources.gpu" in error.advice and "train.batch_size" in error.advice
    assert str(error) == (
        "training must fit in the trial's GPU memory (0.25 of Test GPU by resources.gpu: 2048 MiB), but got out "
        f"of memory at a peak of 1536 MiB allocated; {error.advice}")
    assert isinstance(error.__cause__, torch.OutOfMemoryError)
    # the driver's trainable ends such a trial FAILED instead of retrying it
    assert isinstance(error, ValueError) and repeats_on_retry(error)
    again = pickle.loads(pickle.dumps(error))  # Ray ships errors between processes
    assert (type(again), str(again), again.cap_mb) == (DeviceOutOfMemory, str(error), 2048.0)


def test_out_of_memory_while_the_model_moves_to_the_gpu_fails_the_trial_with_its_cap(monkeypatch):
    # Before the first step: the weights (or a checkpoint's) may not fit the trial's share either.
    gpu = Placement(torch.device("cpu"), fraction=0.25, total_bytes=8 * GIB, name="Test GPU")
    monkeypatch.setattr(device_module, "place", lambda setting, *, gpu_fraction: gpu)
    monkeypatch.setattr(device_module, "peak_allocated_bytes", lambda device: int(1.5 * GIB))
    built = train_module.build_model

    def build_model(*args, **kwargs):
        model = built(*args, **kwargs)

        def to(*to_args, **to_kwargs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")

        model.to = to
        return model

    monkeypatch.setattr(train_module, "build_model", build_model)
    with pytest.raises(DeviceOutOfMemory) as caught:
        _run(CONFIG, gpu_fraction=0.25)
    assert (caught.value.cap_mb, caught.value.peak_mb) == (2048.0, 1536.0)
    assert isinstance(caught.value.__cause__, torch.OutOfMemoryError)


def test_out_of_memory_where_other_processes_held_what_the_cap_allowed_may_pass_on_a_retry(monkeypatch):
    # The GPU ran out 1800 MiB short of what the trial's 2 GiB cap allowed it: others held it. Where
    # the cap ran out first (the GPU had as much free as the cap allowed, or all but the trial's
    # own CUDA context), the same trial would run out again.
    gpu = Placement(torch.device("cpu"), fraction=0.25, total_bytes=8 * GIB, name="Test GPU")
    monkeypatch.setattr(device_module, "place", lambda setting, *, gpu_fraction: gpu)
    monkeypatch.setattr(device_module, "peak_allocated_bytes", lambda device: GIB)
    # 300 MiB short: the trial's own CUDA context, which its allocator does not count
    for held, retried in ((1800 * MIB, True), (300 * MIB, False), (0, False), (-3 * GIB, False)):
        _out_of_memory_at_step(monkeypatch, 2)
        monkeypatch.setattr(device_module, "held_by_others_bytes", lambda placement: held)
        with pytest.raises(DeviceOutOfMemory) as caught:
            _run(CONFIG, gpu_fraction=0.25)
        error = caught.value
        assert error.held_by_others_mb == held / MIB and repeats_on_retry(error) is not retried
        assert ("the GPU ran out 1800 MiB short of the cap: other processes held it" in str(error)) is retried
        again = pickle.loads(pickle.dumps(error))  # Ray ships errors between processes
        assert again.held_by_others_mb == error.held_by_others_mb and repeats_on_retry(again) is not retried
    unknown = DeviceOutOfMemory(device="Test GPU", fraction=None, cap_mb=81920.0, peak_mb=100.0)
    assert repeats_on_retry(unknown) and "other processes" not in str(unknown)


def test_out_of_memory_on_the_cpu_is_left_as_it_is(monkeypatch):
    # Host memory is no cap of the trial's: it may be free on a retry (Tune retries it).
    _out_of_memory_at_step(monkeypatch, 3)
    with pytest.raises(torch.OutOfMemoryError) as caught:
        _run(CONFIG)
    assert not isinstance(caught.value, DeviceOutOfMemory) and not repeats_on_retry(caught.value)


# ---------------------------------------------------------------- mixed precision


def test_amp_on_the_cpu_auto_is_off_quietly_and_fp16_or_bf16_warn():
    cpu = torch.device("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert amp_dtype("auto", cpu) is None and amp_dtype("off", cpu) is None
    for setting in ("fp16", "bf16"):
        with pytest.warns(RuntimeWarning, match=f"train.amp {setting} needs CUDA; training in float32"):
            assert amp_dtype(setting, cpu) is None


@pytest.mark.parametrize(("setting", "native_bf16", "dtype"), [
    ("auto", True, torch.bfloat16), ("auto", False, torch.float16), ("fp16", True, torch.float16),
    ("bf16", True, torch.bfloat16), ("off", True, None),
])
def test_amp_on_cuda_picks_bf16_where_the_gpu_has_it(monkeypatch, setting, native_bf16, dtype):
    # Only the choice is tested (torch.cuda.is_bf16_supported stands in); no kernel runs.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native_bf16)
    assert amp_dtype(setting, torch.device("cuda", 0)) == dtype


def test_bf16_on_a_gpu_without_it_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Old GPU")
    with pytest.raises(ValueError, match=r"fp16, auto or off on a GPU without bfloat16 \(Old GPU\), but got 'bf16'"):
        amp_dtype("bf16", torch.device("cuda", 0))


def test_explicit_fp16_on_the_cpu_warns_and_reports_float32():
    with pytest.warns(RuntimeWarning, match="train.amp fp16 needs CUDA"):
        reports, _ = _run(CONFIG | {"train.amp": "fp16", "train.epochs": 1})
    assert reports[0]["device/amp"] == "off"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_under_autocast_the_losses_run_in_float32(monkeypatch, dtype):
    # AMP is a GPU path; CPU autocast stands in for it (same casting rules). Under autocast, supcon's
    # similarity matmul ran in fp16, where its -1e9 mask overflowed on every step.
    monkeypatch.setattr(device_module, "amp_dtype", lambda setting, device: dtype)
    calls = []
    real = MultiHeadLoss.forward

    def forward(self, outputs, targets):
        calls.append(torch.is_autocast_enabled("cpu"))
        return real(self, outputs, targets)

    monkeypatch.setattr(MultiHeadLoss, "forward", forward)
    config = CONFIG | {"train.epochs": 1, "train.amp": "fp16", "auxiliary.kind": "supcon",
                       "auxiliary.supcon.head": "digit", "auxiliary.supcon.weight": 0.5}
    reports, _ = _run(config)
    assert calls and not any(calls)
    assert math.isfinite(reports[0]["train/loss/total"]) and reports[0]["train/loss/total"] > 0


def test_a_checkpoint_without_scaler_state_resumes_under_fp16(tmp_path):
    # Written on the CPU (no fp16, so no scaler state), resumed on a GPU under fp16 (device may change).
    flat = train_module.TrialConfig.from_flat(CONFIG).to_flat()
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    kwargs = {"model": model, "optimizer": optimizer, "batch_rng": torch.Generator()}
    save_checkpoint(tmp_path / "c.pt", flat, Progress(epoch=1), scaler=torch.amp.GradScaler("cpu", enabled=False),
                    **kwargs)
    fp16_scaler = torch.amp.GradScaler("cpu", enabled=True)
    assert load_checkpoint(tmp_path / "c.pt", flat, scaler=fp16_scaler, **kwargs).epoch == 1
    assert fp16_scaler.get_scale() == torch.amp.GradScaler("cpu", enabled=True).get_scale()


def test_out_of_memory_while_a_checkpoint_is_restored_stays_out_of_memory(tmp_path, monkeypatch):
    # Not "a file that is no checkpoint" (CheckpointError, refused for good): the trial's states did
    # not fit on its GPU, which train() reports as DeviceOutOfMemory.
    flat = train_module.TrialConfig.from_flat(CONFIG).to_flat()
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    kwargs = {"model": model, "optimizer": optimizer, "batch_rng": torch.Generator(),
              "scaler": torch.amp.GradScaler("cpu", enabled=False)}
    save_checkpoint(tmp_path / "c.pt", flat, Progress(epoch=1), **kwargs)

    def out_of_memory(state):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(optimizer, "load_state_dict", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        load_checkpoint(tmp_path / "c.pt", flat, **kwargs)


def test_a_checkpoint_of_a_non_fused_adamw_resumes_fused_under_fp16(tmp_path):
    # Written by an older version (AdamW's default step), resumed by a trial that builds the fused
    # one: it stays fused, and a GradScaler's step (unscale_ before clipping, as train() does) runs.
    flat = train_module.TrialConfig.from_flat(CONFIG).to_flat()
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    old = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    old.step()
    save_checkpoint(tmp_path / "c.pt", flat, Progress(epoch=1), model=model, optimizer=old,
                    scaler=torch.amp.GradScaler("cpu", enabled=False), batch_rng=torch.Generator())
    fused = torch.optim.AdamW(model.parameters(), fused=True)
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    load_checkpoint(tmp_path / "c.pt", flat, model=model, optimizer=fused, scaler=scaler, batch_rng=torch.Generator())
    assert fused.param_groups[0]["fused"] is True
    assert fused.state[model.weight]["exp_avg"].abs().sum() > 0  # the saved moments came back
    before = model.weight.detach().clone()
    scaler.scale(model(torch.ones(1, 2)).sum()).backward()
    scaler.unscale_(fused)
    scaler.step(fused)
    scaler.update()
    assert not torch.equal(model.weight, before)
    assert fused.state[model.weight]["step"].item() == 2


# ---------------------------------------------------------------- per-epoch GPU figures


def test_gpu_figures_are_the_epochs_peak_and_mean_utilisation(monkeypatch):
    # torch.cuda's memory statistics and NVML stand in; the monitor's bookkeeping is what is tested.
    samples = iter([40, 60, 80])
    resets = []
    monkeypatch.setattr(torch.cuda, "utilization", lambda device=None: next(samples))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: resets.append(device))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3 * (1 << 20))
    clock = iter([0.0, 0.1, 0.6])  # the second tick comes before a sample is due
    monkeypatch.setattr(device_module.time, "monotonic", lambda: next(clock))
    monitor = GpuMonitor(torch.device("cuda", 0))  # its probe takes the first sample (40)
    assert monitor.sampling
    monitor.start_epoch()
    for _ in range(3):
        monitor.tick()
    assert monitor.epoch_metrics() == {"gpu/peak_allocated_mb": 3.0, "gpu/utilization_pct": 70.0}
    assert len(resets) == 1


def test_gpu_utilisation_is_left_out_where_nvml_is_missing(monkeypatch):
    def no_nvml(device=None):
        raise ModuleNotFoundError("pynvml does not seem to be installed or it can't be imported.")

    monkeypatch.setattr(torch.cuda, "utilization", no_nvml)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 1 << 20)
    monitor = GpuMonitor(torch.device("cuda", 0))
    monitor.start_epoch()
    assert not monitor.sampling and monitor.epoch_metrics() == {"gpu/peak_allocated_mb": 1.0}
    cpu = GpuMonitor(torch.device("cpu"))
    assert not cpu.active and not cpu.sampling and cpu.epoch_metrics() == {}


def test_a_checkpoint_keeps_the_cuda_generator_of_the_training_device_only(tmp_path, monkeypatch):
    # Before, every visible GPU's generator was saved whenever CUDA was available (a CPU trial on a
    # GPU node started CUDA for it), and restoring 4 states where 1 GPU is visible raised IndexError,
    # a CheckpointError that failed the trial for good. Fake CUDA generators: 4 GPUs when saving.
    states = {i: torch.tensor([i], dtype=torch.uint8) for i in range(4)}
    set_calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [states[i] for i in range(4)])
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": states[torch.device(device).index or 0])
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": set_calls.append((int(state[0]), str(device))))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    flat = train_module.TrialConfig.from_flat(CONFIG).to_flat()
    model = torch.nn.Linear(2, 2)
    kwargs = {"model": model, "optimizer": torch.optim.AdamW(model.parameters()), "batch_rng": torch.Generator(),
              "scaler": torch.amp.GradScaler("cpu", enabled=False)}

    save_checkpoint(tmp_path / "cpu.pt", flat, Progress(epoch=1), device=torch.device("cpu"), **kwargs)
    assert torch.load(tmp_path / "cpu.pt", weights_only=True)["rng"]["cuda"] == []
    load_checkpoint(tmp_path / "cpu.pt", flat, device=torch.device("cpu"), **kwargs)
    assert set_calls == []

    save_checkpoint(tmp_path / "gpu.pt", flat, Progress(epoch=1), device=torch.device("cuda:2"), **kwargs)
    assert [int(s[0]) for s in torch.load(tmp_path / "gpu.pt", weights_only=True)["rng"]["cuda"]] == [2]
    load_checkpoint(tmp_path / "gpu.pt", flat, device=torch.device("cuda:0"), **kwargs)  # resumed where one GPU is seen
    assert set_calls == [(2, "cuda:0")]

    # a checkpoint of an older version: one state per visible GPU, the device's taken
    payload = torch.load(tmp_path / "gpu.pt", weights_only=True)
    payload["rng"]["cuda"] = [states[i] for i in range(4)]
    torch.save(payload, tmp_path / "old.pt")
    set_calls.clear()
    load_checkpoint(tmp_path / "old.pt", flat, device=torch.device("cuda:1"), **kwargs)
    load_checkpoint(tmp_path / "old.pt", flat, device=torch.device("cuda:7"), **kwargs)
    assert set_calls == [(1, "cuda:1"), (0, "cuda:7")]
