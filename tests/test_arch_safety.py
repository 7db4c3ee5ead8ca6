"""Arch files are untrusted: code-execution payloads give one clean ConfigError (issue 16.1b).

Every payload below runs code when AccelForge loads/evaluates it unprotected (checked by
hand: the Jinja one and the `__subclasses__` one create their marker file). No mapping here.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hwsim import accelforge_backend as backend
from hwsim import arch_safety
from hwsim.models.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
ARCH = ROOT / "arch" / "eyeriss_sram.yaml"
SIZE = "size: 12 * 16 # 12 16b entries"  # InputScratchpad, arch.nodes[4]


def _evil(tmp_path, old, new, name="evil.yaml") -> Path:
    text = ARCH.read_text()
    assert text.count(old) == 1
    p = tmp_path / name
    p.write_text(text.replace(old, new))
    return p


def _refused(p, *fragments, accelforge_loader=False) -> str:
    with pytest.raises(ConfigError) as e:
        backend.load_arch(p, accelforge_loader)
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg
    for f in fragments:
        assert f in msg, msg
    return msg


# ------------------------------------------------------------------ shipped files

@pytest.mark.parametrize("arch", sorted((ROOT / "arch").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_arch_passes_unchanged(arch):
    text = arch.read_text()
    arch_safety.check_arch_text(arch, text)
    arch_safety.check_spec(arch, backend._load_yaml_plain(text))
    _, info = backend.load_arch(arch, accelforge_loader=False)
    # the committed cache is keyed by this hash: it must still find the shipped arch
    # (ResNet-20's 7 shapes at least; tests/test_arch_check.py checks which)
    keys = json.loads((ROOT / "arch" / "cache" / "energy.json").read_text())["entries"]
    assert sum(k.startswith(info.sha256 + "|") for k in keys) >= 7


def test_shipped_arch_passes_through_accelforge_loader():
    d, info = backend.load_arch(ARCH)  # ruamel types (tagged maps, scalar strings)
    assert info.weight_memory == ("WeightSRAM",) and len(d["arch"]["nodes"]) == 8


def test_allowed_expressions_pass(tmp_path):
    p = _evil(tmp_path, SIZE, "size: max(depth, 4) * 16 if depth > 1 else ceil(log2(64))\n"
              "    total_latency: round(2 ** 10 / 3) + abs(-1) - min(1, pi)")
    p.write_text("variables: {depth: 12}\n" + p.read_text().replace(
        "tensors: {keep: input}", "tensors: {keep: input | Outputs & ~weight}"))
    _, info = backend.load_arch(p, accelforge_loader=False)
    assert info.components[4] == "InputScratchpad"
    for inert in ["My SRAM, 2 ports", "a = 1", "x +"]:  # not Python: eval cannot run it
        assert arch_safety._violation(inert, frozenset()) is None


# ------------------------------------------------------------------ expressions

@pytest.mark.parametrize("payload, why", [
    ("__import__('os').system('touch MARK')", "attribute access '.system'"),
    ("().__class__.__mro__[1].__subclasses__()", "attribute access '.__subclasses__'"),
    ("__builtins__", "name '__builtins__'"),
    ("size.__class__", "attribute access '.__class__'"),
    ("(lambda: 0)()", "lambda"),
    ("[c for c in All]", "comprehension"),
    ("sum(a.n_calls for a in actions)", "name 'sum'"),
    ("getcwd()", "name 'getcwd'"),
    ("getcwd", "name 'getcwd'"),
    ("open('/etc/passwd')", "call of 'open'"),
    ("All[0]", "subscript"),
    ("round(3.5, ndigits=1)", "keyword argument"),
    ("secret * 2", "unknown name 'secret'"),
])
def test_expression_payload_refused(tmp_path, payload, why):
    p = _evil(tmp_path, SIZE, f'size: "{payload}"')
    msg = _refused(p, "field arch.nodes[4].size", repr(payload), why, "allowed:")
    assert "ceil" in msg and "max" in msg  # says what is allowed


def test_payload_in_a_key_is_refused(tmp_path):  # AccelForge evaluates some keys too
    p = _evil(tmp_path, "tensors: {keep: input}",
              "tensors: {keep: input, \"weight.__class__\": 1}")
    _refused(p, "field arch.nodes[4].tensors", "key 'weight.__class__'", ".__class__")


def test_refused_before_accelforge_evaluates_anything(tmp_path):
    marker = tmp_path / "MARK"
    payload = ("[c for c in ().__class__.__mro__[1].__subclasses__() if c.__name__ == "
               "'catch_warnings'][0]()._module.__builtins__['__import__']('os')"
               f".system('touch {marker}')")
    p = _evil(tmp_path, SIZE, f'size: "{payload}"')
    with pytest.raises(ConfigError, match=r"arch\.nodes\[4\]\.size"):
        backend.map_layer(p, backend.LayerShape("t", "conv", 4, 4, (3, 3), (4, 4), (4, 4)))
    assert not marker.exists()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["evil.yaml"]  # nothing written


def test_config_fields_that_import_python_are_refused(tmp_path):
    marker = tmp_path / "MARK"
    (tmp_path / "funcs.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    for field in ("expression_custom_functions", "component_models"):
        p = _evil(tmp_path, "arch:\n", f"config: {{{field}: [funcs.py]}}\narch:\n")
        _refused(p, f"field config.{field} refused", "Python files",
                 accelforge_loader=True)
    assert not marker.exists()


# ------------------------------------------------------------------ Jinja2

def test_jinja_payload_refused_with_yaml_path_and_nothing_runs(tmp_path):
    marker = tmp_path / "MARK"
    payload = f"{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}"
    p = _evil(tmp_path, SIZE, f'size: "{payload}"')
    for loader in (False, True):
        _refused(p, "field arch.nodes[4].size", "Jinja2 template", "cycler.__init__",
                 "plain variable substitution", accelforge_loader=loader)
    assert not marker.exists()


@pytest.mark.parametrize("template, where", [
    ("{% for x in range(3) %}{% endfor %}\n", "line 1"),
    ("# {{ include_text('/etc/passwd') }}\n", "line 1"),
    ("{{ ''.__class__.__mro__[1] }}\n", "line 1"),
    ("{{ x | attr('__class__') }}\n", "line 1"),
    ("{{ x\n", "line 1"),
])
def test_jinja_blocks_calls_and_filters_refused(tmp_path, template, where):
    p = tmp_path / "evil.yaml"
    p.write_text(template + ARCH.read_text())
    _refused(p, where, "Jinja2 template")


def test_plain_jinja_substitution_and_comments_are_accepted():
    for ok in ["a: {{ x }}", "a: {{- x -}}\nb: 2", "# {# note #}\na: 1"]:
        assert arch_safety._jinja_violation(ok) is None
    assert arch_safety._jinja_violation("a: 1\nb: {{ x.y }}") == (2, "{{ x.y }}")


# ------------------------------------------------------------------ includes

@pytest.mark.parametrize("target", ["/etc/passwd", "../../x.yaml", "../outside.yaml"])
def test_include_outside_the_arch_folder_refused(tmp_path, target):
    (tmp_path / "outside.yaml").write_text("read: 1\n")
    (tmp_path / "a").mkdir()
    p = _evil(tmp_path / "a", "tensors: {keep: input}", f"tensors: !include {target}")
    _refused(p, "field arch.nodes[4].tensors", f"!include {target!r} refused", "outside")


def test_includedir_and_symlink_escapes_refused(tmp_path):
    (tmp_path / "secret.yaml").write_text("keep: input\n")
    (tmp_path / "a").mkdir()
    p = _evil(tmp_path / "a", "tensors: {keep: input}", "tensors: !includedir ..")
    _refused(p, "!includedir '..' refused", "outside")
    (tmp_path / "a" / "link.yaml").symlink_to(tmp_path / "secret.yaml")
    p = _evil(tmp_path / "a", "tensors: {keep: input}", "tensors: !include link.yaml")
    _refused(p, "!include 'link.yaml' refused", "outside")


def test_include_inside_the_folder_is_checked_recursively(tmp_path):
    (tmp_path / "parts").mkdir()
    part = tmp_path / "parts" / "keep.yaml"
    part.write_text("keep: input\n")
    p = _evil(tmp_path, "tensors: {keep: input}", "tensors: !include parts/keep.yaml")
    d, _ = backend.load_arch(p)  # AccelForge's loader resolves the include
    assert d["arch"]["nodes"][4]["tensors"] == {"keep": "input"}
    part.write_text("keep: !include ../../x.yaml\n")
    _refused(p, "included file 'parts/keep.yaml'", "field keep", "outside")
    part.write_text("keep: \"{{ lipsum.__globals__ }}\"\n")
    _refused(p, "included file 'parts/keep.yaml'", "Jinja2 template")


# ------------------------------------------------------------------ CLI

@pytest.mark.parametrize("kind", ["expression", "jinja"])
def test_cli_energy_refuses_evil_arch_with_one_line(tmp_path, capsys, kind):
    from hwsim.cli import main

    marker = tmp_path / "MARK"
    payload = {"expression": f"__import__('os').system('touch {marker}')",
               "jinja": f"{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}"}
    p = _evil(tmp_path, SIZE, f'size: "{payload[kind]}"')
    assert main(["energy", "--arch", str(p), "--model", "small_cnn"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "arch.nodes[4].size" in err and str(p) in err
    assert not marker.exists() and not os.path.exists(f"{marker}")


def test_plain_number_is_float_arithmetic_only():
    """The one evaluator of plain arithmetic in arch fields (sizes, banks): numbers, inf,
    + - * / // **; anything else is None; 9**9**9 overflows in floating point at once
    instead of building a huge integer."""
    import time
    from hwsim.arch_safety import plain_number
    assert plain_number("8 * 1024 * 1024") == 8388608.0 and plain_number(12) == 12.0
    assert plain_number("inf") == float("inf") and plain_number("-2 ** 3") == -8.0
    t = time.perf_counter()
    assert plain_number("9**9**9") is None and plain_number("1/0") is None
    assert time.perf_counter() - t < 1.0
    for bad in ("__import__('os').system('true')", "x + 1", "[1] * 3", True, "2 if 1 else 3"):
        assert plain_number(bad) is None, bad
