"""Tests for extendq.cli.manifest: command-line inputs, folders and CSV/JSONL manifests become job entries."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from extendq.cli.manifest import BadInput, Entry, entries_for, expand_inputs, parse_metadata, read_manifest

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def write(path: Path, text: str = "Invoice #: 1\nTotal: 10.00\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---- --metadata ------------------------------------------------------------------------------------


def test_metadata_parses_a_json_object() -> None:
    assert parse_metadata('{"customer": "acme", "n": 1}') == {"customer": "acme", "n": 1}


@pytest.mark.parametrize("text", [None, "", "   "])
def test_absent_metadata_is_empty(text: str | None) -> None:
    assert parse_metadata(text) == {}


def test_malformed_metadata_names_the_option_and_the_position() -> None:
    with pytest.raises(BadInput, match=r"^--metadata is not valid JSON: .* at column \d+$"):
        parse_metadata('{"customer": ')


@pytest.mark.parametrize(("text", "kind"), [("[1, 2]", "list"), ('"x"', "str"), ("3", "int")])
def test_metadata_must_be_an_object(text: str, kind: str) -> None:
    with pytest.raises(BadInput, match=f"--metadata must be a JSON object, not {kind}"):
        parse_metadata(text)


# ---- PATH and URL arguments -------------------------------------------------------------------------


def test_a_file_becomes_one_absolute_path_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "a.txt")
    monkeypatch.chdir(tmp_path)
    [entry] = expand_inputs(["a.txt"], workflow="wf_1", metadata={"k": "v"})
    assert entry == Entry(file={"path": str(tmp_path / "a.txt")}, label="a.txt", workflow="wf_1", metadata={"k": "v"})


def test_urls_become_url_inputs() -> None:
    [entry] = expand_inputs(["https://example.com/x.pdf"], workflow="wf_1")
    assert entry.file == {"url": "https://example.com/x.pdf"}
    assert entry.label == "https://example.com/x.pdf"


def test_a_folder_expands_to_its_files_sorted_skipping_hidden_ones(tmp_path: Path) -> None:
    # Given a folder with nested files, a hidden file and a hidden folder
    for name in ("b.txt", "a.txt", "sub/c.txt", ".secret", ".git/config", "sub/.hidden"):
        write(tmp_path / "docs" / name)
    # When it is expanded
    entries = expand_inputs([str(tmp_path / "docs")], workflow="wf_1")
    # Then every visible file is there once, in sorted order, as an absolute path
    assert [Path(entry.file["path"]).relative_to(tmp_path / "docs").as_posix() for entry in entries] == [
        "a.txt",
        "b.txt",
        "sub/c.txt",
    ]


def test_each_entry_gets_its_own_copy_of_the_metadata(tmp_path: Path) -> None:
    entries = expand_inputs([str(write(tmp_path / "a")), str(write(tmp_path / "b"))], metadata={"k": 1})
    entries[0].metadata["k"] = 2
    assert entries[1].metadata == {"k": 1}


def test_an_unknown_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"^no such file or folder: .*missing\.pdf$"):
        expand_inputs([str(tmp_path / "missing.pdf")])


def test_an_empty_folder_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "empty" / ".only-hidden")
    with pytest.raises(BadInput, match="holds no files"):
        expand_inputs([str(tmp_path / "empty")])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    locked = write(tmp_path / "locked.txt")
    locked.chmod(0)
    with pytest.raises(BadInput, match=r"cannot read .*locked\.txt: permission denied"):
        expand_inputs([str(locked)])


def test_entries_need_something_to_submit() -> None:
    with pytest.raises(BadInput, match="nothing to submit"):
        entries_for([], workflow="wf_1", metadata={}, manifest=None)


def test_path_arguments_need_a_workflow(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="--workflow is required"):
        entries_for([str(write(tmp_path / "a"))], workflow=None, metadata={}, manifest=None)


# ---- manifests ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["manifest.csv", "manifest.jsonl"])
def test_the_sample_manifests_give_one_entry_per_row(name: str) -> None:
    entries = read_manifest(SAMPLES / name)
    assert len(entries) == 5
    first = entries[0]
    assert first.file == {"path": str((SAMPLES / "invoices/acme-gmbh-inv-2026-0042.txt").resolve())}
    assert first.label == "invoices/acme-gmbh-inv-2026-0042.txt"
    assert first.workflow == "workflow_invoice"
    assert first.metadata == {"customer": "contoso", "po": "PO-7731"}
    assert entries[3].workflow == "workflow_receipt"


def test_csv_and_jsonl_manifests_agree() -> None:
    assert read_manifest(SAMPLES / "manifest.csv") == read_manifest(SAMPLES / "manifest.jsonl")


def test_manifest_rows_take_the_default_workflow_and_merge_metadata(tmp_path: Path) -> None:
    write(tmp_path / "a.txt")
    manifest = write(tmp_path / "m.csv", 'path,metadata\na.txt,"{""po"": ""7""}"\n')
    [entry] = read_manifest(manifest, workflow="wf_default", metadata={"batch": "b1", "po": "0"})
    assert entry.workflow == "wf_default"
    assert entry.metadata == {"batch": "b1", "po": "7"}


def test_a_manifest_path_may_be_a_url(tmp_path: Path) -> None:
    manifest = write(tmp_path / "m.jsonl", json.dumps({"path": "https://example.com/a.pdf", "workflow": "wf"}) + "\n")
    assert read_manifest(manifest)[0].file == {"url": "https://example.com/a.pdf"}


def test_the_format_is_sniffed_without_a_known_suffix(tmp_path: Path) -> None:
    write(tmp_path / "a.txt")
    jsonl = write(tmp_path / "rows", '{"path": "a.txt", "workflow": "wf"}\n')
    csv = write(tmp_path / "table", "path,workflow\na.txt,wf\n")
    assert read_manifest(jsonl) == read_manifest(csv)


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    write(tmp_path / "a.txt")
    manifest = write(tmp_path / "m.jsonl", '\n{"path": "a.txt", "workflow": "wf"}\n\n')
    assert len(read_manifest(manifest)) == 1


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("m.csv", "path,workflow,metadata\na.txt,wf,{not json}\n", r"m\.csv line 2: metadata is not valid JSON"),
        ("m.csv", "path,workflow,metadata\na.txt,wf,[1]\n", r"m\.csv line 2: metadata must be a JSON object"),
        ("m.csv", "path,workflow\na.txt,wf\nmissing.txt,wf\n", r"m\.csv line 3: no such file or folder: missing\.txt"),
        ("m.csv", "path,workflow\na.txt\n", r"m\.csv line 2: fewer values than the header"),
        ("m.csv", "path,workflow\na.txt,wf,extra\n", r"m\.csv line 2: more values than the header"),
        ("m.csv", "path,workflow\n,wf\n", r"m\.csv line 2: path is empty"),
        ("m.csv", "path,workflow\na.txt,\n", r"m\.csv line 2: no workflow"),
        ("m.csv", "file,workflow\na.txt,wf\n", r"m\.csv line 1: the header must name the columns"),
        ("m.jsonl", '{"path": "a.txt", "workflow": "wf"}\n{"path": \n', r"m\.jsonl line 2: not valid JSON"),
        ("m.jsonl", '["a.txt", "wf"]\n', r"m\.jsonl line 1: a row must be a JSON object"),
        ("m.jsonl", '{"path": "a.txt", "workflow": "wf", "priority": 1}\n', r"m\.jsonl line 1: unknown column"),
        ("m.jsonl", '{"path": "a.txt", "workflow": 7}\n', r"m\.jsonl line 1: workflow must be a string"),
        ("m.jsonl", '{"path": "a.txt", "workflow": "wf", "metadata": [1]}\n', r"line 1: metadata must be a JSON"),
    ],
)
def test_a_malformed_row_is_named_by_its_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    write(tmp_path / "a.txt")
    manifest = write(tmp_path / name, text)
    with pytest.raises(BadInput, match=message):
        read_manifest(manifest)


def test_a_missing_manifest_is_named(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"^no such manifest: .*nope\.csv$"):
        read_manifest(tmp_path / "nope.csv")


@pytest.mark.parametrize(("name", "text"), [("m.csv", ""), ("m.csv", "path,workflow\n"), ("m.jsonl", "\n")])
def test_an_empty_manifest_is_refused(tmp_path: Path, name: str, text: str) -> None:
    with pytest.raises(BadInput, match="empty|has no rows"):
        read_manifest(write(tmp_path / name, text))


def test_arguments_come_before_manifest_rows(tmp_path: Path) -> None:
    write(tmp_path / "a.txt")
    manifest = write(tmp_path / "m.csv", "path,workflow\na.txt,wf_row\n")
    entries = entries_for([str(tmp_path / "a.txt")], workflow="wf_arg", metadata={}, manifest=manifest)
    assert [entry.workflow for entry in entries] == ["wf_arg", "wf_row"]
