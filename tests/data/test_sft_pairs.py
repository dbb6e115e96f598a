import textwrap

from codex_jax.data import sft_pairs

SOURCE = textwrap.dedent('''\
    import os
    import re as regex
    from collections import Counter
    from . import sibling

    LIMIT = 3


    def standalone(text, n=2):
        """Return the n most common words of text, lower-cased."""
        # comment kept with the body
        words = regex.findall(r"\\w+", text.lower())
        return [w for w, _ in Counter(words).most_common(n)]


    def uses_module_constant(x):
        """Clamp x to the module's LIMIT constant."""
        return min(x, LIMIT)


    def uses_relative_import(x):
        """Call the sibling module on the value x."""
        return sibling.run(x)


    def nested(x):
        """Apply an inner helper to the value x."""
        def inner(y):
            return y + 1
        return inner(x)


    def trivial(x):
        """Not implemented yet, on purpose."""
        raise NotImplementedError


    def undocumented(x):
        return x


    @staticmethod
    def decorated(x):
        """A decorated function is skipped."""
        return x


    def with_doctest(n):
        """Double n.

        >>> with_doctest(2)
        4
        >>> print(with_doctest(3))
        6
        >>> with_doctest(None)
        Traceback (most recent call last):
        TypeError: unsupported operand type(s) for *: 'int' and 'NoneType'
        """
        return 2 * n
    ''')


def test_extract_standalone_function_with_used_imports_only():
    problems, dropped = sft_pairs.extract_functions("pkg/m.py", SOURCE)
    by_name = {p["entry_point"]: p for p in problems}
    assert set(by_name) == {"standalone", "with_doctest"}
    p = by_name["standalone"]
    assert p["task_id"] == "pkg/m.py:standalone"
    assert p["prompt"].startswith(
        "from collections import Counter\nimport re as regex\n\n\ndef standalone("
    )
    assert "import os" not in p["prompt"]
    assert p["prompt"].endswith('lower-cased."""\n')
    assert p["completion"].startswith("    # comment kept with the body\n    words = ")
    assert p["completion"].endswith("most_common(n)]\n")
    assert dropped == {
        "not_standalone": 2,
        "nested_or_global": 1,
        "trivial_body": 1,
        "no_docstring": 1,
        "decorated": 1,
    }


def test_prompt_plus_completion_runs_alone():
    problems, _ = sft_pairs.extract_functions("m.py", SOURCE)
    p = next(p for p in problems if p["entry_point"] == "standalone")
    namespace = {}
    exec(p["prompt"] + p["completion"], namespace)
    assert namespace["standalone"]("b a b c b a") == ["b", "a"]


def test_doctest_check_passes_right_body_and_fails_wrong_one():
    problems, _ = sft_pairs.extract_functions("m.py", SOURCE)
    p = next(p for p in problems if p["entry_point"] == "with_doctest")
    assert p["has_doctest"]
    for completion, passes in (
        (p["completion"], True),
        ("    return 3 * n\n", False),
        ("    return n + n\n", False),
    ):  # right values, wrong exception
        namespace = {}
        exec(p["prompt"] + completion + p["test"], namespace)
        try:
            namespace["check"](namespace["with_doctest"])
            passed = True
        except AssertionError:
            passed = False
        assert passed == passes


def test_limits_drop_long_functions():
    body = "".join(f"    x{i} = {i}\n" for i in range(50))
    source = f'def f():\n    """A function with a long body."""\n{body}    return x0\n'
    problems, dropped = sft_pairs.extract_functions("m.py", source)
    assert not problems and dropped == {"long_body": 1}
    problems, _ = sft_pairs.extract_functions(
        "m.py", source, sft_pairs.Limits(max_body_lines=60, max_chars=10_000)
    )
    assert len(problems) == 1


def test_unparsable_file_is_counted_not_raised():
    problems, dropped = sft_pairs.extract_functions("m.py", "def broken(:\n")
    assert not problems and dropped == {"unparsable_file": 1}
