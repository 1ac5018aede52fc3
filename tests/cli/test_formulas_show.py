"""`gt-finetune formulas show`: steps, then what a first run needs, then the advanced vars."""
from pathlib import Path

from gt_finetune.cli import main
from gt_finetune.formula import load_formula

PACKAGED = Path(__file__).resolve().parents[2] / "gt_finetune" / "data" / "formulas" / "finetune-lora.formula.toml"


def show(capsys, name):
    code = main(["formulas", "show", name])
    out, err = capsys.readouterr()
    return code, out, err


def test_finetune_lora_needs_no_vars_and_lists_each_var_once_common_before_advanced(capsys, isolated):
    code, out, _ = show(capsys, "finetune-lora")
    assert code == 0
    assert "A first run needs no vars." in out
    common, advanced = out.split("\nCommon vars:\n")[1].split("\nAdvanced vars:\n")
    names = [line.split()[0] for line in (common + advanced).splitlines() if line.startswith("  ") and not
             line.startswith("      ") and line.strip()]
    formula = load_formula(PACKAGED)
    assert sorted(names) == sorted(v.name for v in formula.vars)
    assert "base_model = smollm2-135m-instruct" in common and "max_steps [int] = 30" in common
    assert "lora_r [int] = 8" in advanced and "Advanced:" not in out
    assert out.index("  corpus ") < out.index("  train ") < out.index("  review ")
    assert "train    Train the LoRA adapter  (after plan)" in out


def test_required_vars_come_first_with_an_example(capsys, isolated):
    folder = Path.cwd() / ".beads" / "formulas"
    folder.mkdir(parents=True)
    (folder / "mine.formula.toml").write_text(
        'formula = "mine"\ntype = "workflow"\ndescription = "Mine."\n'
        '[vars.rig]\ndescription = "Which rig"\nrequired = true\n'
        '[vars.depth]\ndescription = "Advanced: How deep"\ntype = "int"\ndefault = "3"\n'
        '[[steps]]\nid = "a"\ntitle = "Do a"\n')
    code, out, _ = show(capsys, "mine")
    assert code == 0
    assert "Required vars:\n  rig (required)\n      Which rig" in out
    assert "Advanced vars:\n  depth [int] = 3\n      How deep" in out
    assert out.rstrip().endswith("gt-finetune run mine --var rig=<value>")


def test_unknown_formula_names_where_it_looked(capsys, isolated):
    code, _, err = show(capsys, "no-such")
    assert code == 1 and "formula `no-such` not found" in err and "gt-finetune formulas list" in err
