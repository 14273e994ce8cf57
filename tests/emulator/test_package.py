"""The emulator package's public names."""

from extendq import emulator


def test_all_names_are_exported_and_exist() -> None:
    assert sorted(emulator.__all__) == sorted(
        [
            "BUILTIN",
            "Extraction",
            "Profile",
            "ProfileError",
            "create_app",
            "extract_fields",
            "load_profile",
            "parse_profile",
            "sign",
        ]
    )
    for name in emulator.__all__:
        assert getattr(emulator, name) is not None


def test_emulator_imports_nothing_from_the_sdk_or_the_worker() -> None:
    # The emulator is the other side of the contract: sharing code would hide drift.
    from pathlib import Path

    source = "\n".join(p.read_text() for p in Path(emulator.__file__).parent.glob("*.py"))
    for forbidden in (
        "extend_ai",
        "from extendq.worker",
        "import extendq.worker",
        "from extendq.tasks",
        "from extendq.config",
    ):
        assert forbidden not in source
