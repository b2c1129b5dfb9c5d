"""Label sources for evaluation (cpc_tf.audio.labels)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpc_tf.audio.labels import (
    CsvLabels,
    FolderLabels,
    RegexLabels,
    parse_label_source,
    with_label_column,
)
from cpc_tf.errors import ConfigError


def test_folder_labels() -> None:
    src = parse_label_source("folder", "/data")
    assert isinstance(src, FolderLabels)
    assert src.label_for("dog/bark 1.wav") == "dog"
    assert src.label_for("dog/deeper/x.wav") == "dog"
    assert src.label_for("top.wav") == ""
    assert src.label_for("./cat/ü.wav") == "cat"
    assert src.labels_for(["a/1.wav", "2.wav"]) == ["a", ""]


def test_regex_labels_on_fsdd_names() -> None:
    digit = parse_label_source(r"regex:^(\d)_", None)
    speaker = parse_label_source(r"regex:^\d_([a-z]+)_", None)
    assert isinstance(digit, RegexLabels)
    assert digit.label_for("7_jackson_32.wav") == "7"
    assert speaker.label_for("fsdd/7_jackson_32.wav") == "jackson"  # the name, not the folders
    assert digit.label_for("9/notadigit.wav") == ""  # no match
    whole = parse_label_source(r"regex:[a-z]+", None)  # no group: the whole match
    assert whole.label_for("123abc_4.wav") == "abc"


@pytest.mark.parametrize("spec", [r"regex:(\d", "regex:", "regexp:x", "csv", "labels.csv", ""])
def test_bad_specs(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_label_source(spec, None)
    assert "\n" not in str(info.value) and str(info.value).startswith("labels:")


def test_csv_labels(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    (audio / "rock").mkdir(parents=True)
    (audio / "rock" / "song 1.mp3").write_bytes(b"")
    table = tmp_path / "tags.csv"
    table.write_text(
        "filename,tags,extra\n"
        "rock/song 1.mp3,guitar;loud,drums\n"
        "./b.wav,piano;quiet\n"
        "c.wav,\n"
        "b.wav,quiet;piano\n"
        "only_name.wav,solo\n",
        encoding="utf-8",
    )
    src = parse_label_source(f"csv:{table}", audio)
    assert isinstance(src, CsvLabels)
    assert src.label_for("rock/song 1.mp3") == "guitar;loud"  # the `tags` column; `extra` ignored
    assert src.label_for("b.wav") == "piano;quiet"  # a repeated row with the same tags
    assert src.label_for("c.wav") == ""
    assert src.label_for("missing.wav") == ""
    assert src.label_for("sub/only_name.wav") == "solo"  # bare names match when unique


def test_csv_columns_are_chosen_by_header(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    audio.mkdir()
    table = tmp_path / "meta.csv"
    table.write_text(
        "path,label,speaker,duration_s\n0_george_0.wav,zero,george,0.5\n"
        "1_jackson_0.wav,one,jackson,0.4\n",
        encoding="utf-8",
    )
    src = parse_label_source(f"csv:{table}", audio)
    assert src.labels_for(["0_george_0.wav", "1_jackson_0.wav"]) == ["zero", "one"]
    by_speaker = parse_label_source(with_label_column(f"csv:{table}", "speaker"), audio)
    assert by_speaker.spec == f"csv:{table}#speaker"
    assert by_speaker.labels_for(["0_george_0.wav", "1_jackson_0.wav"]) == ["george", "jackson"]
    with pytest.raises(ConfigError, match="no column 'gender'; its columns are 'path', 'label'"):
        parse_label_source(f"csv:{table}#gender", audio)
    with pytest.raises(ConfigError, match="use it with --labels csv:PATH"):
        with_label_column("folder", "speaker")
    ambiguous = tmp_path / "ambiguous.csv"
    ambiguous.write_text("file,speaker,digit\na.wav,george,0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="name the label column with --label-column"):
        parse_label_source(f"csv:{ambiguous}", audio)
    wide = tmp_path / "wide.csv"
    wide.write_text("a.wav,zero,george\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="rows of 3 columns and no header"):
        parse_label_source(f"csv:{wide}", audio)


def test_csv_conflicting_rows_name_the_file(tmp_path: Path) -> None:
    table = tmp_path / "labels.csv"
    table.write_text("path,label\na.wav,dog\nb.wav,cat\na.wav,cat\n", encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"gives 'a.wav' two different labels \('dog' and 'cat', row 4\)"
    ):
        parse_label_source(f"csv:{table}", tmp_path)


def test_csv_counts_rows_without_files_and_files_without_rows(tmp_path: Path) -> None:
    table = tmp_path / "labels.csv"
    table.write_text(
        "path,label\na.wav,dog\nb.wav,cat\ngone.wav,cat\nalso_gone.wav,dog\n", encoding="utf-8"
    )
    src = parse_label_source(f"csv:{table}", tmp_path)
    assert src.labels_for(["a.wav", "b.wav", "new.wav"]) == ["dog", "cat", ""]
    assert len(src.warnings) == 2
    assert (
        src.warnings[0].startswith("2 of the 4 rows of ")
        and "(first: 'gone.wav')" in src.warnings[0]
    )
    assert (
        src.warnings[1].startswith("1 of the 3 files have no label")
        and "'new.wav'" in src.warnings[1]
    )
    with pytest.raises(ConfigError, match="gives no label to any of the 2 files"):
        src.labels_for(["x.wav", "y.wav"])
    assert parse_label_source("folder").labels_for(["flat.wav"]) == [
        ""
    ]  # an unlabelled folder is allowed
    with pytest.raises(ConfigError, match=r"regex:\^\(\\d\)_ gives no label"):
        parse_label_source("regex:^(\\d)_").labels_for(["song.wav"])


def test_tsv_without_header_relative_to_audio_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "labels.tsv").write_text("x/1.wav\tcat;pet\n2.wav\tdog\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    src = parse_label_source("csv:labels.tsv", audio)  # found inside the audio folder
    assert src.label_for("x/1.wav") == "cat;pet"
    assert src.label_for("2.wav") == "dog"


def test_missing_csv(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CSV file not found"):
        parse_label_source("csv:nope.csv", tmp_path)
    with pytest.raises(ConfigError, match="is a folder"):
        parse_label_source(f"csv:{tmp_path}", tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("path,label\n")
    with pytest.raises(ConfigError, match="lists no files"):
        parse_label_source(f"csv:{empty}", tmp_path)


def test_label_column_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cpc_tf.cli import main

    (tmp_path / "a.wav").write_bytes(b"")
    for command in ("train", "extract", "tune"):
        argv = [
            command,
            "--audio-dir",
            str(tmp_path),
            "--labels",
            "folder",
            "--label-column",
            "speaker",
            "--out",
            str(tmp_path / "out"),
            "--config",
            "cpc_conv1d_gru",
        ]
        argv += ["--random-init"] if command == "extract" else []
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            "cpc_tf: error: --label-column names a column of a CSV: use it with --labels csv:PATH"
        ]
