"""Numeric precision: what ``precision = "auto"`` picks, decided from a given /proc/cpuinfo text or CUDA answer
(so no particular machine is needed), and bf16 training itself, which runs on any CPU (emulated, slowly,
where the CPU has no bf16 instructions: the run below is kept tiny).

Every other test that compares numbers pins precision = "fp32"; this file is where bf16 is tested.
"""

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from copy_task import CopyBatches, CopyTask, V  # noqa: E402  (tests/ is on sys.path)
from safetensors.torch import load_file

import rosetta.train.precision as precision  # the module: tests monkeypatch its cpu_has_native_bf16
from rosetta import ModelConfig, Transformer
from rosetta import checkpoint as ckpt
from rosetta.decode import greedy_search
from rosetta.train import Trainer, autocast_for
from rosetta.train.recipe import Recipe, TrainSection

CPU, CUDA = torch.device("cpu"), torch.device("cuda")

# /proc/cpuinfo flag lines of real CPUs (as Linux prints them: "flags", two tabs, ": ").
_BASE = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht "
         "syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid tsc_known_freq pni "
         "pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c "
         "rdrand hypervisor lahf_lm abm 3dnowprefetch")
# AMD EPYC 7B12 (Zen 2): AVX2, no AVX-512 at all.
ZEN2 = (_BASE + " mmxext fxsr_opt cmp_legacy cr8_legacy sse4a misalignsse osvw topoext ssbd ibrs ibpb stibp "
        "vmmcall fsgsbase tsc_adjust bmi1 avx2 smep bmi2 rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec "
        "xgetbv1 clzero xsaveerptr arat npt nrip_save umip rdpid")
_AVX512 = (" fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid avx512f avx512dq rdseed adx smap avx512ifma "
           "clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves")
# Intel Xeon Platinum 8375C (Ice Lake): AVX-512 with VNNI, but no BF16.
ICE_LAKE = (_BASE + " invpcid_single ssbd ibrs ibpb stibp ibrs_enhanced" + _AVX512 + " wbnoinvd ida arat "
            "avx512vbmi pku ospke avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg tme "
            "avx512_vpopcntdq rdpid md_clear flush_l1d arch_capabilities")
# AMD EPYC 9004 (Zen 4): AVX-512 BF16.
ZEN4 = (_BASE + " mmxext fxsr_opt cmp_legacy cr8_legacy sse4a misalignsse osvw topoext vmmcall" + _AVX512
        + " avx512_bf16 clzero xsaveerptr arat avx512vbmi umip avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni "
        "avx512_bitalg avx512_vpopcntdq rdpid fsrm")
# Intel Xeon Platinum 8488C (Sapphire Rapids): AVX-512 BF16 and AMX.
SAPPHIRE_RAPIDS = (_BASE + " invpcid_single ssbd ibrs ibpb stibp ibrs_enhanced" + _AVX512 + " avx_vnni "
                   "avx512_bf16 wbnoinvd ida arat avx512vbmi umip pku ospke waitpkg avx512_vbmi2 gfni vaes "
                   "vpclmulqdq avx512_vnni avx512_bitalg tme avx512_vpopcntdq la57 rdpid bus_lock_detect cldemote "
                   "movdiri movdir64b md_clear serialize amx_bf16 avx512_fp16 amx_tile amx_int8 flush_l1d "
                   "arch_capabilities")
# The same with avx512_bf16 taken out: amx_bf16 on its own is enough.
AMX_ONLY = SAPPHIRE_RAPIDS.replace(" avx512_bf16 ", " ")


def cpuinfo(flags: str, model: str = "Some CPU", processors: int = 2) -> str:
    """A /proc/cpuinfo text: one block per logical processor, each with its flags line."""
    block = ("processor\t: {i}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel name\t: {model}\n"
             "cpu MHz\t\t: 2900.000\nfpu\t\t: yes\nflags\t\t: {flags}\n"
             "bugs\t\t: spectre_v1 spectre_v2 spec_store_bypass\nbogomips\t: 5800.00\n\n")
    return "".join(block.format(i=i, model=model, flags=flags) for i in range(processors))


CPUS = {  # name: (flags, does "auto" pick bf16 on it)
    "avx2-only (Zen 2)": (ZEN2, False),
    "avx512f without bf16 (Ice Lake)": (ICE_LAKE, False),
    "avx512_bf16 (Zen 4)": (ZEN4, True),
    "avx512_bf16 + amx_bf16 (Sapphire Rapids)": (SAPPHIRE_RAPIDS, True),
    "amx_bf16 alone": (AMX_ONLY, True),
}


@pytest.mark.parametrize("name", CPUS)
def test_native_bf16_is_read_from_the_cpuinfo_flags(name):
    flags, native = CPUS[name]
    assert precision.cpu_flags_have_native_bf16(cpuinfo(flags)) is native
    assert precision.cpu_flags_have_native_bf16(f"flags\t\t: {flags}\n") is native  # one line is enough


def test_only_the_flags_line_counts():
    assert not precision.cpu_flags_have_native_bf16("")
    assert not precision.cpu_flags_have_native_bf16(cpuinfo(ZEN2, model="avx512_bf16 amx_bf16 lookalike"))
    assert not precision.cpu_flags_have_native_bf16("flags\t\t: fpu avx512_bf16x amx_bf16_lite\n")  # whole words


def test_this_machine_is_read_the_same_way():
    """The cached reader is the pure function applied to this machine's /proc/cpuinfo (where there is one)."""
    path = Path("/proc/cpuinfo")
    if not path.exists():
        pytest.skip("no /proc/cpuinfo here")
    assert precision.cpu_has_native_bf16() == precision.cpu_flags_have_native_bf16(path.read_text())


@pytest.fixture
def cpu_with(monkeypatch):
    """cpu_with(flags): make use_bf16 see a CPU with those /proc/cpuinfo flags."""
    def set_flags(flags: str) -> None:
        text = cpuinfo(flags)
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: precision.cpu_flags_have_native_bf16(text))
    return set_flags


@pytest.mark.parametrize("name", CPUS)
def test_auto_on_a_cpu_picks_bf16_only_with_native_bf16(name, cpu_with):
    flags, native = CPUS[name]
    cpu_with(flags)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto never warns
        assert precision.use_bf16(CPU, "auto") is native
    a = torch.ones(4, 4)
    with autocast_for(CPU, "auto"):
        product = a @ a
    assert product.dtype == (torch.bfloat16 if native else torch.float32)


@pytest.mark.parametrize("supported", [True, False])
@pytest.mark.parametrize("cpu_flags", [ZEN2, ZEN4])
def test_auto_on_cuda_asks_cuda_not_the_cpu(supported, cpu_flags, cpu_with, monkeypatch):
    """No GPU needed: use_bf16 only asks torch.cuda.is_bf16_supported; the CPU's flags play no part."""
    cpu_with(cpu_flags)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    assert precision.use_bf16(CUDA, "auto") is supported
    assert precision.use_bf16(torch.device("cuda", 0), "auto") is supported


@pytest.mark.parametrize("name", CPUS)
def test_explicit_fp32_and_bf16_are_obeyed(name, cpu_with, monkeypatch):
    flags, native = CPUS[name]
    cpu_with(flags)
    for supported in (True, False):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, s=supported, **k: s)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert precision.use_bf16(CPU, "fp32") is False
            assert precision.use_bf16(CUDA, "fp32") is False
            assert precision.use_bf16(CUDA, "bf16") is True
            if native:
                assert precision.use_bf16(CPU, "bf16") is True  # native: no warning either
    if not native:
        with pytest.warns(UserWarning, match="emulated"):
            assert precision.use_bf16(CPU, "bf16") is True
    a = torch.ones(4, 4)
    with autocast_for(CPU, "fp32"):
        assert (a @ a).dtype == torch.float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with autocast_for(CPU, "bf16"):
            assert (a @ a).dtype == torch.bfloat16


def test_bf16_on_a_cpu_without_native_bf16_warns_that_it_is_emulated(cpu_with):
    cpu_with(ZEN2)
    with pytest.warns(UserWarning, match=r"bf16 on a CPU without AVX-512 BF16/AMX is emulated.*\"fp32\""):
        precision.use_bf16(CPU, "bf16")
    with pytest.warns(UserWarning, match="emulated"):
        with autocast_for(CPU, "bf16"):
            pass


@pytest.mark.parametrize("bad", ["fp16", "BF16", "float32", "", "bfloat16"])
def test_an_unknown_precision_is_refused_by_name(bad, cpu_with):
    cpu_with(ZEN4)
    expected = rf"precision must be one of auto, fp32, bf16, got {bad!r}"
    for device in (CPU, CUDA):
        with pytest.raises(ValueError, match=expected):
            precision.use_bf16(device, bad)
    with pytest.raises(ValueError, match=expected):
        autocast_for(CPU, bad)


# ------------------------------------------------------------------------------------- bf16 training
STEPS = 10


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    """A tiny copy-task Transformer trained STEPS steps with precision = "bf16" on the CPU (explicitly, so it
    runs on any CPU); records the dtype of one layer's output during training and the warnings raised."""
    out = tmp_path_factory.mktemp("bf16")
    task = CopyTask(seed=0, dropout=0.0)
    recipe = Recipe(train=TrainSection(max_steps=STEPS, lr=3e-3, warmup_steps=3, eval_every=0, save_every=STEPS,
                                       bleu_every=0, log_every=1, keep_last=1, average_last=1, seed=3,
                                       precision="bf16", device="cpu"))
    seen = set()
    layer = next(m for m in task.model.modules() if isinstance(m, torch.nn.Linear))
    hook = layer.register_forward_hook(lambda m, i, o: seen.add(o.dtype) if m.training else None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model gains nothing from more (and emulated bf16 is slow enough)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Trainer(recipe, task, out, progress=False).fit()
    finally:
        torch.set_num_threads(threads)
        hook.remove()
    return task, out, seen, [str(w.message) for w in caught]


def test_bf16_training_runs_in_bf16_and_its_loss_falls(bf16_run):
    task, out, seen, messages = bf16_run
    assert seen == {torch.bfloat16}  # autocast really was on: the layer computed in bf16
    emulated = [m for m in messages if "emulated" in m]
    assert bool(emulated) is not precision.cpu_has_native_bf16()  # warned exactly where bf16 is emulated
    log = [json.loads(line) for line in (out / ckpt.METRICS_FILE).read_text().splitlines()]
    losses = [r["nll"] for r in log if r["kind"] == "train"]
    assert len(losses) == STEPS and all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3  # learning, not just not exploding:
    assert losses[-1] < math.log(V)  # already better than a uniform guess over the vocabulary
    assert all(p.dtype == torch.float32 for p in task.model.parameters())  # autocast keeps fp32 master weights


def test_bf16_checkpoint_holds_fp32_weights_and_decodes_like_the_model_in_memory(bf16_run):
    task, out, _, _ = bf16_run
    final = out / ckpt.FINAL_DIR
    for directory in (final, out / "checkpoints" / ckpt.step_name(STEPS)):
        ckpt.verify_checkpoint(directory)
        tensors = load_file(directory / ckpt.MODEL_FILE)
        assert tensors and {t.dtype for t in tensors.values()} == {torch.float32}, directory

    reloaded = Transformer(ModelConfig.from_dict(ckpt.read_config(final)["model"]))
    ckpt.load_weights(final, reloaded)
    reloaded.eval()
    in_memory = task.model.eval()
    src, tgt_in, _ = CopyBatches(seed=999)._batch(0)
    with torch.no_grad():  # fp32: no autocast here
        logits = reloaded(src, tgt_in)
        assert logits.dtype == torch.float32
        assert torch.equal(logits, in_memory(src, tgt_in))
    decoded = greedy_search(reloaded, src, max_len_offset=2)
    assert decoded == greedy_search(in_memory, src, max_len_offset=2)
    assert len(decoded) == len(src) and any(decoded)
