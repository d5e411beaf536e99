"""Grading: the student handout, the autograder, and the graders' own test.

- `release`: `kcaption release OUT` writes `OUT/student/` (the handout: stubs,
  clean lessons, public tests) and `OUT/autograder/` (a Gradescope bundle:
  solutions, public + hidden tests, `setup.sh`, `run_autograder`).
- `grade`: `kcaption grade SUBMISSION` grades a student's `kcaption/` one
  graded step at a time into Gradescope's `results.json`: a trusted judge
  per step runs the tests, and `sandbox` / `worker` / `jail` run the
  student's code for them as an unprivileged user, under limits, with only
  plain data (`wire`) crossing; `precheck` parses a submitted file without
  running it.
- `mutants`: `kcaption mutants` applies a catalog of realistic student bugs to
  the solutions and reports the share the tests catch (the mutation score).
- `layout` says which files of the kit go where; `results` writes the
  Gradescope schema; `splice` writes a function body into a package (to build
  test submissions).
"""
