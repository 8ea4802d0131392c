"""One recipe contract (recipe_contract/recipe.py): every recipe of the catalog provides what the features ask of it,
and no module of the generic packages names a recipe — no comparison with a recipe's name, no recipe name as a literal
in code, no import of a recipe's folder or model package other than through the catalog (issue 70, item 5).

What the LiDAR recipes share lives in `cp_debug/lidar` (points, voxels, 3D boxes and their matching, synthetic scenes,
the `ModelRecord`), any model's samples, judge and task metrics in `cp_debug/samples`, safe pickles in
`cp_debug/pickles`: none of them is a recipe. What is one recipe's alone — CenterPoint's own sweep lanes, eval
pipeline, replay, bench rows, PTQ, training losses, the pair's verification — is a plug-in of its folder, reached
through `Recipe.plugin(feature)`.
`cp_debug/recipes/__init__.py` ("A fourth recipe") says what a fourth recipe writes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cp_debug.recipes import catalog
from cp_debug.recipe_contract.recipe import PLUGINS, Recipe

PACKAGE = Path(__file__).resolve().parents[2] / "cp_debug"
RECIPE_HOMES = ("recipes", "models")  # where a recipe's own code lives: its folder, its network


def generic_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in RECIPE_HOMES)


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the string constants that are docstrings (they may say which model they speak of)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def recipe_names_in_code(path: Path, names: set[str]) -> list[str]:
    """`line: what` for every string literal of `path`'s code (not a docstring) that is a recipe's name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = _docstrings(tree)
    return [f"{node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
            and id(node) not in docs]


def recipe_imports(path: Path, packages: set[str]) -> list[str]:
    """`line: module` for every import of `path` (anywhere in it) that reaches into one of `packages`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found += [f"{node.lineno}: {m}" for m in mods if any(m == p or m.startswith(p + ".") for p in packages)]
    return found


def test_every_recipe_of_the_catalog_keeps_the_contract():
    recipes = catalog.every()
    assert len({r.name for r in recipes}) == len(recipes) >= 3
    assert catalog.recipe().name == catalog.DEFAULT
    for r in recipes:
        assert isinstance(r, Recipe) and catalog.recipe(r.name) is r
        assert r.plugins <= set(PLUGINS), r.name
        for feature in r.plugins:
            module = r.plugin(feature)
            missing = [hook for hook in PLUGINS[feature] if not hasattr(module, hook)]
            assert not missing, f"{module.__name__} lacks {missing} (recipe_contract/recipe.PLUGINS[{feature!r}])"
        if r.preset_config is not None:  # a recipe built from presets runs every preset command
            for hook in ("box_cut", "frame_subject", "bisect_subject", "load_model", "export_files"):
                assert getattr(r, hook) is not None, f"{r.name} lacks {hook}"
            assert r.default_preset and r.graph_files and r.model_types()
            assert r.config(r.default_preset) is not None


def test_a_recipe_without_a_feature_is_one_line_and_an_unknown_name_lists_the_built_in_ones():
    from cp_debug.errors import BadInputError

    module = catalog.recipe("module")
    assert not module.has("fix") and module.preset_config is None
    with pytest.raises(BadInputError, match="fix does not run the generic module recipe"):
        module.plugin("fix")
    with pytest.raises(BadInputError, match="built-in recipes are centerpoint, transfusion"):
        catalog.recipe("pointpillars")


def test_no_generic_module_names_a_recipe_in_code():
    """The names `--recipe` takes (the module recipe is chosen by --torch / --onnx, never by name; its name,
    "module", is every torch module's key too)."""
    names = set(catalog.built_in())
    found = {str(p.relative_to(PACKAGE.parent)): hits for p in generic_modules()
             if (hits := recipe_names_in_code(p, names))}
    assert not found, f"recipe names in the code of generic packages (ask the recipe instead): {found}"


def _name(path: Path) -> str:
    return str(path.relative_to(PACKAGE).with_suffix(""))


def test_no_generic_module_imports_a_recipe_but_through_the_catalog():
    """Only through the `Recipe` the command line hands down (`Recipe.plugin(feature)`): no recipe's folder or
    network, CenterPoint's and the module recipe's included, is imported by name from a generic package (nor the
    catalog: pyproject.toml's contract "the recipe is handed down")."""
    packages = {f"cp_debug.{home}.{r.name}" for r in catalog.every() for home in RECIPE_HOMES}
    assert {"cp_debug.recipes.centerpoint", "cp_debug.models.centerpoint", "cp_debug.recipes.module"} <= packages
    found = {_name(p): hits for p in generic_modules() if (hits := recipe_imports(p, packages))}
    assert not found, f"generic packages import a recipe's own code (ask the catalog's Recipe instead): {found}"


def test_the_checks_see_a_name_compared_and_an_import(tmp_path):
    src = tmp_path / "m.py"
    src.write_text('"""transfusion"""\nimport cp_debug.recipes.transfusion.fix\n\n\ndef f(r):\n'
                   '    """centerpoint"""\n    return r == "transfusion"\n')
    assert recipe_names_in_code(src, {"transfusion", "centerpoint"}) == ["7: 'transfusion'"]
    assert recipe_imports(src, {"cp_debug.recipes.transfusion"}) == ["2: cp_debug.recipes.transfusion.fix"]


def test_a_fourth_recipe_is_one_folder_and_one_catalog_line(tmp_path, monkeypatch):
    """A recipe written as one folder (its `recipe.py` and a `train.py` plug-in) and registered by one line of the
    catalog is taken by `--recipe`, trained by `cpdebug train`'s detector lookup, and refused by the features it does
    not plug into, in one line each — no generic module changed."""
    from cp_debug.cli.common.options import recipe_name
    from cp_debug.cli.common.preflight import refuse_options
    from cp_debug.errors import BadInputError
    from cp_debug.recipes.catalog import detector

    folder = tmp_path / "fourth_recipe"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "recipe.py").write_text(
        "from cp_debug.recipe_contract.recipe import Recipe\n"
        "RECIPE = Recipe(name='fourth', title='Fourth', package='fourth_recipe', plugins=frozenset({'train'}),\n"
        "                preset_config=lambda name: {'name': name}, default_preset='fourth-demo',\n"
        "                refuses={'sweep': ('--int8',)})\n")
    (folder / "train.py").write_text(
        "from cp_debug.train.detectors import Detector\n"
        "def detector():\n"
        "    return Detector('fourth', lambda n: n, None, None, None, None)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(catalog._FOLDERS, "fourth", "fourth_recipe")
    catalog._load.cache_clear()
    try:
        assert "fourth" in catalog.built_in() and recipe_name("fourth") == "fourth"
        assert catalog.preset_config("fourth", "fourth-demo") == {"name": "fourth-demo"}
        assert detector("fourth").recipe == "fourth"
        with pytest.raises(BadInputError, match="--int8: CenterPoint's; not for --recipe fourth"):
            refuse_options("fourth", "sweep", {"--int8": "DIR"})
        with pytest.raises(BadInputError, match="fix does not run the Fourth recipe"):
            catalog.recipe("fourth").plugin("fix")
    finally:
        catalog._load.cache_clear()


@pytest.mark.parametrize("command", ["bench", "quantize", "sensitivity"])
def test_a_recipe_without_the_feature_is_refused_by_its_command_in_one_line(tmp_path, command):
    """The commands of CenterPoint's plug-ins take `--recipe` and ask that recipe for the plug-in: TransFusion-L,
    which has none, is one line and exit 2 before a model loads or a file is written."""
    from tests.cli_run import cpdebug

    out = tmp_path / "out"
    run = cpdebug(command, "--recipe", "transfusion", "--preset", "transfusion-tiny", "--json", str(out / "r.json"),
                  "-q")
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"{command} does not run the TransFusion-L recipe" in run.stderr.strip().splitlines()[-1]
    assert not out.exists()
