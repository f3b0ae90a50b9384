"""Studies: the slices of one examination answered together, as a radiologist has them.

    studies = read_studies(["scans/", "export.zip"], workdir)     # gathered, grouped and checked
    rows, answers = explain_studies(clf, studies, "out")           # overlays, slices.csv, studies.csv

Input is files, folders (searched recursively) and zip archives. Slices are grouped into studies: DICOM
files by their series (StudyInstanceUID + SeriesInstanceUID, as a salted hash that is shown, never the
UIDs: `hub.dicom.slice_header`), ordered by InstanceNumber; other images (and DICOM files without UIDs)
by the folder that holds them, ordered by name. A multi-frame DICOM file gives one slice per frame.

Everything is checked before any model work, and a request with a bad input is refused whole with one
line (`StudyError`): no slice at all or more than `Limits.slices`, more bytes than `Limits.bytes`, a zip
member that points outside the archive (zip-slip) or a link, a folder that mixes DICOM files with other
images, a study whose slices differ in size, a DICOM series with InstanceNumbers missing (or repeated),
a DICOM file without pixels (a report), a slice that does not decode. Hidden files, DICOMDIR indexes and
files that are not images are skipped and listed (`Request.skipped`).

Each slice is explained once (Grad-CAM by default): the forward pass of its map gives its probabilities,
the predicted class and the overlay (`SliceRow`). The study's answer (`StudyAnswer`) follows `RULE`: each
class's probability averaged over the study's slices, the class with the highest mean. Labels and
preprocessing come from the model's config, through the Classifier.
"""
from __future__ import annotations

import csv
import io
import os
import re
import stat
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Optional

import numpy as np
from PIL import Image

from hub.dicom import DICOM_HEAD, is_dicom, slice_header
from hub.errors import ImageError, StudyError
from hub.explain.batch import Explainer
from hub.explain.cam import MaxChannels
from hub.explain.explanation import Explanation, Target
from hub.files import write_atomic
from hub.images import find_images, is_image_file, load_frames

MAX_SLICES = 500             # slices (files, or frames of multi-frame files) in one request
MAX_BYTES = 1_000_000_000    # bytes of the files in one request, zip members counted unpacked
RULE = ("mean probability over slices: each class's probability is averaged over the study's slices; "
        "the study's answer is the class with the highest mean")
SLICES_CSV = "slices.csv"
STUDIES_CSV = "studies.csv"
SKIPPED_NAMES = frozenset({"dicomdir"})   # a DICOM CD's index: DICOM without pixels, but not a slice


@dataclass(frozen=True)
class Limits:
    """How much one request may hold."""

    slices: int = MAX_SLICES
    bytes: int = MAX_BYTES


@dataclass(frozen=True)
class Slice:
    """One image of a study: its file, its name as shown (never a temporary path) and its frame in the file."""

    path: Path
    name: str
    frame: int = 0
    frames: int = 1

    @property
    def label(self) -> str:
        """The name, with the frame for a multi-frame file."""
        return f"{self.name} [frame {self.frame + 1}]" if self.frames > 1 else self.name


@dataclass(frozen=True)
class Study:
    """Slices answered together: a DICOM series ("series <hash>") or the images of one folder."""

    name: str
    kind: str                    # "dicom" or "image"
    slices: tuple[Slice, ...]
    size: tuple[int, int]        # (width, height), shared by every slice


@dataclass(frozen=True)
class Request:
    """The checked studies of one request, and the files skipped as not images (shown names)."""

    studies: tuple[Study, ...]
    skipped: tuple[str, ...] = ()

    @property
    def slices(self) -> int:
        return sum(len(s.slices) for s in self.studies)


@dataclass(frozen=True)
class SliceRow:
    """One slice's answer: its predicted class and that class's probability, every class's probability (in the
    model's label order) and its overlay (a path relative to the output folder; '' when none was written)."""

    study: str
    index: int                   # 1-based position in the study
    slice: str
    label: str
    probability: float
    probabilities: tuple[float, ...]
    overlay: str = ""


@dataclass(frozen=True)
class StudyAnswer:
    """A study's answer under `RULE`: the class with the highest mean probability, and every class's mean."""

    study: str
    kind: str
    slices: int
    label: str
    probability: float
    probabilities: tuple[float, ...]
    rule: str = RULE


# ---- gathering and checks ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _File:
    path: Path
    name: str       # as shown
    folder: str     # the study a non-DICOM image belongs to


def size_text(n: int) -> str:
    """Bytes in words: 1.2 GB, 34 MB, 5 kB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def member_path(name: str) -> Optional[PurePosixPath]:
    """A zip member's path inside the archive, or None when it points outside it (absolute, a drive, '..')."""
    parts = PurePosixPath(name.replace("\\", "/"))
    if parts.is_absolute() or re.match(r"^[A-Za-z]:", name) or ".." in parts.parts:
        return None
    return parts


def extract_zip(path: Path, shown: str, dest: Path, limits: Limits) -> Path:
    """The archive's files under `dest`, once every member is inside it, none is a link, and the unpacked
    sizes fit the limits; a StudyError naming the archive otherwise (nothing is extracted then)."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            for info in infos:
                if member_path(info.filename) is None:
                    raise StudyError(f"{shown}: member '{info.filename}' points outside the archive (zip-slip); "
                                     "nothing was read from it")
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise StudyError(f"{shown}: member '{info.filename}' is a symbolic link; nothing was read "
                                     "from the archive: zip the files themselves")
            unpacked = sum(i.file_size for i in infos)
            if unpacked > limits.bytes:
                raise StudyError(f"{shown}: unpacks to {size_text(unpacked)}, over the limit of "
                                 f"{size_text(limits.bytes)}; split the study into smaller archives")
            if len(infos) > limits.slices:
                raise StudyError(f"{shown}: holds {len(infos):,} files, over the limit of {limits.slices:,} slices "
                                 "a request; split the study")
            for info in infos:
                target = dest.joinpath(*member_path(info.filename).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:  # at most file_size bytes come out
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError) as exc:
        raise StudyError(f"{shown}: not a readable zip archive ({type(exc).__name__}: {exc})") from None
    return dest


def _files(inputs: Sequence[str | os.PathLike], workdir: Path, limits: Limits, group: Optional[str],
           names: Optional[dict[str, str]]) -> tuple[list[_File], list[str]]:
    """Every candidate file of the inputs (zips extracted into `workdir`) and the names of those skipped."""
    files: list[_File] = []
    skipped: list[str] = []
    for n, raw in enumerate(inputs):
        path = Path(raw)
        shown = (names or {}).get(str(raw), str(raw))
        if path.is_dir():
            root, base = path, Path(shown).name or path.resolve().name
        elif path.suffix.lower() == ".zip" and path.is_file():
            root, base = extract_zip(path, shown, workdir / f"{n:03d}", limits), Path(shown).stem
        elif path.is_file():
            if path.name.startswith(".") or path.name.lower() in SKIPPED_NAMES or not is_image_file(path):
                skipped.append(shown)
            else:
                files.append(_File(path, shown, group if group is not None else str(Path(shown).parent)))
            continue
        else:
            raise StudyError(f"{shown}: no such file or folder")
        found = [p for p in find_images(root) if p.name.lower() not in SKIPPED_NAMES]
        for p in found:
            rel = p.relative_to(root)
            files.append(_File(p, f"{base}/{rel.as_posix()}", f"{base}/{rel.parent.as_posix()}".rstrip("/.")))
        kept = set(found)
        skipped += [f"{base}/{p.relative_to(root).as_posix()}" for p in sorted(root.rglob("*"))
                    if p.is_file() and p not in kept]
    return files, skipped


def _decoded_sizes(f: _File) -> list[tuple[int, int]]:
    """The size of every frame of the file once decoded, or a StudyError naming it."""
    try:
        return [im.size for im in load_frames(f.path)]
    except ImageError as exc:
        raise StudyError(str(exc).replace(str(f.path), f.name)) from None


def read_studies(inputs: Sequence[str | os.PathLike], workdir: str | os.PathLike, limits: Limits = Limits(),
                 group: Optional[str] = None, names: Optional[dict[str, str]] = None) -> Request:
    """Gather the files of `inputs` (files, folders, zips, extracted into `workdir`), group them into studies and
    check them (see the module's docstring); a StudyError with one line for the first thing wrong.

    `group`: the study every loose file belongs to (the app passes 'upload'; default: the file's folder).
    `names`: what each input is called in messages (the app maps its temporary paths to the uploads' names).
    """
    files, skipped = _files(inputs, Path(workdir), limits, group, names)
    if not files:
        what = f" (skipped, not images: {', '.join(skipped[:3])}{', ...' if len(skipped) > 3 else ''})" * bool(skipped)
        raise StudyError(f"no slices: no image, DICOM or zip file was given{what}")
    if len(files) > limits.slices:
        raise StudyError(f"{len(files):,} files, over the limit of {limits.slices:,} slices a request; "
                         "split the study or send fewer files")
    total = sum(f.path.stat().st_size for f in files)
    if total > limits.bytes:
        raise StudyError(f"the files hold {size_text(total)}, over the limit of {size_text(limits.bytes)}; "
                         "send fewer or smaller files")
    dicom, images, headers = {}, {}, {}
    for f in files:
        with open(f.path, "rb") as fh:
            head = fh.read(DICOM_HEAD)
        if is_dicom(head, f.path.name):
            try:
                headers[f] = slice_header(f.path, f.name)
            except ImageError as exc:
                raise StudyError(f"{exc}; remove it from the study") from None
            dicom.setdefault(f.folder, []).append(f)
        else:
            images.setdefault(f.folder, []).append(f)
    mixed = sorted(set(dicom) & set(images))
    if mixed:
        folder = mixed[0]
        raise StudyError(f"'{folder or '.'}' mixes {len(dicom[folder])} DICOM file(s) with {len(images[folder])} "
                         f"other image(s) (e.g. {images[folder][0].name}); a study is a DICOM series or a folder "
                         "of images: put them in separate folders")
    groups: dict[tuple[str, str], list[_File]] = {}
    for folder, fs in dicom.items():
        for f in fs:
            series = headers[f].series
            key = ("dicom", f"series {series}") if series else ("dicom", folder or ".")
            groups.setdefault(key, []).append(f)
    for folder, fs in images.items():
        groups[("image", folder or ".")] = fs
    studies = []
    for (kind, name), fs in sorted(groups.items(), key=lambda kv: kv[0][1]):
        if kind == "dicom":
            _check_instances(name, fs, headers)
            fs = sorted(fs, key=lambda f: (headers[f].instance is None, headers[f].instance or 0, f.name))
        else:
            fs = sorted(fs, key=lambda f: f.name)
        slices, sizes = [], {}
        for f in fs:
            frames = _decoded_sizes(f)
            for i, size in enumerate(frames):
                sizes.setdefault(size, f.name)
                slices.append(Slice(f.path, f.name, i, len(frames)))
        if len(sizes) > 1:
            (a, first), (b, other) = list(sizes.items())[:2]
            raise StudyError(f"'{name}' mixes slice sizes: {a[0]}x{a[1]} ({first}) and {b[0]}x{b[1]} ({other}); "
                             "a study's slices share one size: send each size as its own study")
        studies.append(Study(name, kind, tuple(slices), next(iter(sizes))))
    request = Request(tuple(studies), tuple(skipped))
    if request.slices > limits.slices:
        raise StudyError(f"{request.slices:,} slices (frames of multi-frame files counted), over the limit of "
                         f"{limits.slices:,} a request; split the study")
    return request


def _check_instances(name: str, files: list[_File], headers: dict) -> None:
    """A series whose InstanceNumbers skip or repeat a value is incomplete or mixed: a StudyError naming them."""
    numbers = sorted(headers[f].instance for f in files if headers[f].instance is not None)
    if not numbers:
        return
    repeated = sorted({n for n in numbers if numbers.count(n) > 1})
    if repeated:
        raise StudyError(f"'{name}': InstanceNumber {repeated[0]} appears more than once; the series holds "
                         "copies or two acquisitions: export it again")
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise StudyError(f"'{name}': {len(missing)} slice(s) missing from the series (InstanceNumber {shown} of "
                         f"{numbers[0]}-{numbers[-1]}); export the whole series")


# ---- the model work and the answers ------------------------------------------------------------------------------

def iter_images(slices: Sequence[Slice]) -> Iterator[tuple[Slice, Image.Image]]:
    """Each slice with its decoded image; a multi-frame file is decoded once for all its frames."""
    path, frames = None, []
    for s in slices:
        if s.path != path:
            path, frames = s.path, load_frames(s.path)
        yield s, frames[s.frame]


def explain_slices(clf: Explainer, images: Sequence[Image.Image], method: str = "gradcam",
                   max_channels: MaxChannels = "auto", target: Target = None) -> list[Explanation]:
    """Each image's map (no faithfulness figures); its forward pass gives the probabilities of every class."""
    return [clf.explain(im, method=method, max_channels=max_channels, target=target, faithfulness=False)
            for im in images]


def slice_row(study: Study, index: int, s: Slice, e: Explanation, labels: Sequence[str],
              overlay: str = "") -> SliceRow:
    """The row of the `index`-th (1-based) slice `s` of `study`, from its explanation."""
    probs = tuple(float(p) for p in e.probabilities)
    best = int(np.argmax(probs))
    return SliceRow(study.name, index, s.label, labels[best], probs[best], probs, overlay)


def study_answer(study: Study, rows: Sequence[SliceRow], labels: Sequence[str]) -> StudyAnswer:
    """`RULE` over the study's rows: every class's mean probability, the class with the highest mean."""
    means = tuple(float(m) for m in np.mean([r.probabilities for r in rows], axis=0))
    best = int(np.argmax(means))
    return StudyAnswer(study.name, study.kind, len(rows), labels[best], means[best], means)


def slug(text: str) -> str:
    """A file-name-safe form of a study's name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "study"


def overlay_name(study_index: int, study: Study, index: int, s: Slice, method: str) -> str:
    """Where a slice's overlay goes under the output folder: collision-free across studies and frames."""
    frame = f"_f{s.frame + 1}" if s.frames > 1 else ""
    return (f"overlays/{study_index:03d}_{slug(study.name)}/{index:04d}_{slug(Path(s.name).stem)}{frame}"
            f".{method}.png")


def slice_columns(labels: Sequence[str]) -> list[str]:
    return ["study", "index", "slice", "label", "probability", *[f"probability_{lb}" for lb in labels], "overlay"]


def study_columns(labels: Sequence[str]) -> list[str]:
    return ["study", "kind", "slices", "answer", "probability", *[f"mean_probability_{lb}" for lb in labels], "rule"]


def _csv(header: Sequence[str], rows) -> str:
    """CSV text: a header, then the rows (numbers already formatted)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def slices_csv(rows: Sequence[SliceRow], labels: Sequence[str]) -> str:
    """The per-slice table as CSV text."""
    return _csv(slice_columns(labels), ([r.study, r.index, r.slice, r.label, f"{r.probability:.6f}",
                                         *[f"{p:.6f}" for p in r.probabilities], r.overlay] for r in rows))


def studies_csv(answers: Sequence[StudyAnswer], labels: Sequence[str]) -> str:
    """The per-study answers as CSV text, each with its rule."""
    return _csv(study_columns(labels), ([a.study, a.kind, a.slices, a.label, f"{a.probability:.6f}",
                                         *[f"{p:.6f}" for p in a.probabilities], a.rule] for a in answers))


def explain_studies(clf: Explainer, request: Request, out: str | os.PathLike, method: str = "gradcam",
                    max_channels: MaxChannels = "auto", target: Target = None, opacity: float = 0.5,
                    progress: Optional[Callable[[int, int], None]] = None
                    ) -> tuple[list[SliceRow], list[StudyAnswer]]:
    """Explain every slice of the checked `request`: overlays under `out`/overlays/, then slices.csv and
    studies.csv in `out`; `progress(done, total)` after each slice. Returns the rows and the answers."""
    out = Path(out)
    rows, answers, done = [], [], 0
    for k, study in enumerate(request.studies):
        mine = []
        for index, (s, image) in enumerate(iter_images(study.slices), start=1):
            e = explain_slices(clf, [image], method, max_channels, target)[0]
            name = overlay_name(k, study, index, s, method)
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            e.overlay(opacity).save(out / name)
            mine.append(slice_row(study, index, s, e, clf.labels, name))
            done += 1
            if progress is not None:
                progress(done, request.slices)
        rows += mine
        answers.append(study_answer(study, mine, clf.labels))
    write_atomic(out / SLICES_CSV, slices_csv(rows, clf.labels))
    write_atomic(out / STUDIES_CSV, studies_csv(answers, clf.labels))
    return rows, answers
