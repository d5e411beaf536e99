"""Mutation testing: every catalogued student bug is caught, every valid variant passes.

`test_mutation_score_is_100` is the CI gate: it prints the mutation score and
fails below 100%, on a failing variant, on a stale catalog entry, or when a
graded step has fewer than MIN_MUTANTS bugs or MIN_VARIANTS variants.
"""

import shutil

import pytest

from kcaption import steps
from kcaption.grading import mutants

MUTANTS, VARIANTS = mutants.load_catalog()


@pytest.fixture
def solutions_copy(tmp_path):
    copy = tmp_path / "solutions"
    shutil.copytree(steps.solutions_dir(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


@pytest.mark.parametrize("edit", MUTANTS + VARIANTS, ids=lambda e: f"{e.step}: {e.why}")
def test_catalog_entry_applies(edit, solutions_copy):
    before = edit.path(solutions_copy).read_text()
    edit.apply(solutions_copy)
    assert edit.path(solutions_copy).read_text() != before


def test_every_step_has_mutants_and_variants():
    short = [
        f"{step.id} ({sum(e.step == step.id for e in MUTANTS)} mutants, "
        f"{sum(e.step == step.id for e in VARIANTS)} variants)"
        for step in steps.all_steps()
        if sum(e.step == step.id for e in MUTANTS) < mutants.MIN_MUTANTS
        or sum(e.step == step.id for e in VARIANTS) < mutants.MIN_VARIANTS
    ]
    assert not short, (
        f"add realistic bugs (at least {mutants.MIN_MUTANTS}) and a valid variant to "
        f"tests/mutants/catalog.py for: {', '.join(short)}"
    )


@pytest.mark.parametrize(
    "old, new, problem",
    [("no such text anywhere", "x", "exactly once"), ("\n", "\n\n", "exactly once"), (None, "def (:", "syntax")],
)
def test_a_stale_or_broken_entry_is_an_error(solutions_copy, old, new, problem):
    edit = MUTANTS[0]
    broken = mutants.Edit(edit.step, old if old is not None else edit.old, new, "broken entry")
    with pytest.raises(mutants.CatalogError, match=problem):
        broken.apply(solutions_copy)


def test_runner_tells_caught_from_survived():
    """One worker runs a real bug, a harmless edit and a variant in turn: caught, SURVIVED, passes."""
    bug = MUTANTS[0]
    first_line = mutants.Edit(bug.step, "", "", "").path(steps.solutions_dir()).read_text().splitlines()[0]
    harmless = mutants.Edit(bug.step, first_line, first_line + "  # harmless", "a harmless edit")
    variant = next(v for v in VARIANTS if v.step == bug.step)
    done = mutants.run_catalog([("mutant", bug), ("mutant", harmless), ("variant", variant)], workers=1)
    assert [verdict for _, _, verdict, _ in done] == ["caught", "SURVIVED", "passes"], done


@pytest.mark.slow
def test_mutation_score_is_100(capsys):
    with capsys.disabled():
        print()
        code = mutants.main()
    assert code == 0, "a mutant survived, a variant failed or the catalog is incomplete: see the lines above"
