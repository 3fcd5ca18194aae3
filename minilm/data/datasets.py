"""The course datasets: a registry (url, sha256, size, license, citation) and `fetch()` (taught in 00-01).

A file resolves from the mirror folder named by $MINILM_DATA_DIR, then the user cache
($MINILM_CACHE_DIR, default the OS cache folder), then a download (pooch, with a progress
bar, written to a temporary name and renamed only once its sha256 is right). A file whose
checksum is wrong is refused and named; nothing corrupt is ever left in the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import urllib.parse
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pooch

MIRROR_VAR = "MINILM_DATA_DIR"
CACHE_VAR = "MINILM_CACHE_DIR"
_RAW = "https://raw.githubusercontent.com"


class DataError(RuntimeError):
    """A dataset file could not be had, or its bytes are not the registered ones."""


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset, at `path` inside the mirror and the cache."""

    path: str  # relative path, same in the mirror folder and the cache
    sha256: str
    size: int  # bytes
    url: str  # where to download it (for a zip member: the zip's URL)
    zip_member: str | None = None  # member to extract when `url` is a zip
    zip_sha256: str | None = None  # sha256 of the zip itself


@dataclass(frozen=True)
class Dataset:
    """A named dataset of the course with its provenance."""

    name: str
    description: str
    files: tuple[DataFile, ...]
    license: str
    citation: str
    source: str = ""  # human-readable source (repo : path @ commit)
    notes: str = field(default="")


def _gh(repo: str, commit: str, path: str) -> str:
    return f"{_RAW}/{repo}/{commit}/{urllib.parse.quote(path, safe='/{}')}"  # keep {n} a template


_RASBT = ("rasbt/LLMs-from-scratch", "28c65cdfbc3338e2e040016eea4b7fdf556e4d57")
_CROWS = "nyu-mll/crows-pairs", "8aaac11c485473159ec9328a65253a5be9a479dc"
_WINO = "uclanlp/corefBias", "0bce984dd081bbc10b0622f326727a024c607895"
_WEAT = "dccuchile/wefe", "1998132a3e809481a7456d952f7473d191990946"
_TANG_COMMIT = "99ebbef7e1345c0985c44b9fd96a3f9e776f117b"
_SENT_ZIP = _gh("nltk/nltk_data", "gh-pages", "packages/corpora/sentence_polarity.zip")
_SENT_ZIP_SHA = "6e1ed4405b65c7eabf1d199a7f7c437091ac21da0ea7467b410a74062574566b"

_WINO_FILES = {
    "anti_stereotyped_type1.txt.dev": ("a4e0ebae344e78b56f657a42e8ae684b9db7747d177c5e7149c0907ebb7f3bf6", 32782),
    "anti_stereotyped_type1.txt.test": ("331db5bd74bfefebf146a60b67645152a4a1991570d2a56f57154103ac361dd2", 34778),
    "anti_stereotyped_type2.txt.dev": ("763ad829ad724f9a85ead689ba8ca69072020cb1238def6210f0fc6a47b97e59", 30875),
    "anti_stereotyped_type2.txt.test": ("336571ac1ea8c06cd2aba8e5dd2bd98e00acc0c48da3e4ec5ec7e54eb2633a8f", 31769),
    "pro_stereotyped_type1.txt.dev": ("dd55a0d220fe4c0ceb63dd4648223fb4fe1a58d5ad95c116a002ad24b0e292a5", 32786),
    "pro_stereotyped_type1.txt.test": ("db7838907238a758eeb5779e48f38c013b892910d6fe864456c59f04245c6689", 34820),
    "pro_stereotyped_type2.txt.dev": ("8f0250de723cea9328e3eaf7169e07936f01aa5909ce7aa580db66eb803f4e86", 30884),
    "pro_stereotyped_type2.txt.test": ("ea1c1fd94fa612e3cc44d7fa3cc4cb76021bb63fdf94f9826f430051e9052438", 31749),
    "male_occupations.txt": ("6b82d88847b69d56d207a0c396e9830b031890de585e916e6b4e9bc50672657e", 169),
    "female_occupations.txt": ("693bff12286c2c1d46c7d4d45a44a631574710c30b39c1a3001bb7bdebb44ed8", 177),
    "LICENSE": ("fdc813af7e33d0d7852c742a8a3983934d3c1c770014062246883c194c363830", 1090),
}

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            "tinyshakespeare",
            "40,000 lines of Shakespeare's plays, 65 distinct ASCII characters",
            (DataFile("tinyshakespeare.txt", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
                      1115394, _gh("karpathy/char-rnn", "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e",
                                   "data/tinyshakespeare/input.txt")),),
            license="text public domain; repository MIT",
            citation="Karpathy, A. (2015). char-rnn. https://github.com/karpathy/char-rnn",
            source="karpathy/char-rnn : data/tinyshakespeare/input.txt @ 6f9487a",
        ),
        Dataset(
            "names",
            "32,033 lower-case US first names, one per line",
            (DataFile("names.txt", "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d", 228145,
                      _gh("karpathy/makemore", "988aa59e4d8fefa526d06f3b453ad116258398d4", "names.txt")),),
            license="repository MIT (Copyright 2022 Andrej Karpathy); names from US SSA data (US government work)",
            citation="Karpathy, A. (2022). makemore. https://github.com/karpathy/makemore",
            source="karpathy/makemore : names.txt @ 988aa59",
        ),
        Dataset(
            "tang",
            "17,876 Tang five-character poems (quatrains and regulated verse), one per line",
            (DataFile("tang_5char_poems.txt", "6f80a4cc63074fea458e94496acf138629b19b959f9e94e5dec82a0290b903c1",
                      2325116, _gh("chinese-poetry/chinese-poetry", _TANG_COMMIT, "全唐诗/poet.tang.{n}.json")),),
            license="poems public domain (全唐诗, 1705); JSON packaging MIT (Copyright 2016 JackeyGao)",
            citation="chinese-poetry: the most comprehensive database of Chinese poetry. "
            "https://github.com/chinese-poetry/chinese-poetry",
            source=f"built from chinese-poetry/chinese-poetry : 全唐诗/poet.tang.{{0..57000}}.json @ {_TANG_COMMIT[:7]}",
            notes="built by minilm.data.datasets.build_tang from 58 upstream JSON files; the result is sha256-checked",
        ),
        Dataset(
            "rt-polarity",
            "Rotten Tomatoes sentence polarity v1.0: 5,331 positive and 5,331 negative snippets",
            tuple(
                DataFile(f"sentiment/{out}", sha, size, _SENT_ZIP, f"sentence_polarity/{member}", _SENT_ZIP_SHA)
                for out, member, sha, size in [
                    ("rt-polarity.pos", "rt-polarity.pos",
                     "c2dc6b2f55bcf725725372916287cc3f8f9b19402edaa9167de5287cb3ade421", 626334),
                    ("rt-polarity.neg", "rt-polarity.neg",
                     "614274f81185a850e5a88d533d4679f916d6f62e9af6f0b4ec71fb94bf466ea5", 612441),
                    ("README.rt-polarity.txt", "README.txt",
                     "94a2b97849746338d5f9533cdd8086ca11ffe6de168ec9f3d64d662fa733ecd3", 2352),
                ]
            ),
            license="CC BY 4.0 (Bo Pang and Lillian Lee), as shipped by NLTK",
            citation="Pang, B. and Lee, L. (2005). Seeing stars: Exploiting class relationships for sentiment "
            "categorization with respect to rating scales. ACL 2005.",
            source="nltk/nltk_data : packages/corpora/sentence_polarity.zip @ gh-pages",
        ),
        Dataset(
            "movie_reviews",
            "Movie review polarity v2.0: 2,000 full reviews (1,000 pos, 1,000 neg), one sentence a line, in a zip",
            (DataFile("sentiment/movie_reviews.zip",
                      "a41211ae685019137410268134db6a1a14428c89b671eb83056151a878539008", 4004848,
                      _gh("nltk/nltk_data", "gh-pages", "packages/corpora/movie_reviews.zip")),),
            license="CC BY 4.0 (Bo Pang and Lillian Lee), as shipped by NLTK",
            citation="Pang, B. and Lee, L. (2004). A sentimental education: Sentiment analysis using subjectivity "
            "summarization based on minimum cuts. ACL 2004.",
            source="nltk/nltk_data : packages/corpora/movie_reviews.zip @ 5db857e (gh-pages)",
            notes="the zip itself is the file (read its members movie_reviews/{pos,neg}/*.txt); 7 lines equal "
            "rt-polarity lines: minilm.finetune.reviews.pretraining_text drops them",
        ),
        Dataset(
            "instruct",
            "1,100 instructions with answers, and the same with a polite (chosen) and an impolite (rejected) "
            "answer: Raschka's chapter 7 data (09's real-LLM stage)",
            tuple(DataFile(f"instruct/{n}", sha, size, _gh(*_RASBT, f"ch07/{folder}/{n}"))
                  for n, folder, sha, size in [
                      ("instruction-data.json", "01_main-chapter-code",
                       "7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944", 203524),
                      ("instruction-data-with-preference.json", "04_preference-tuning-with-dpo",
                       "305315abf14f65fa42c01a0877572f832606571c2a7d49f152ac1d758b16756e", 386968),
                  ]),
            license="Apache License 2.0 (Copyright Sebastian Raschka)",
            citation="Raschka, S. (2024). Build a Large Language Model (From Scratch), chapter 7. Manning.",
            source="rasbt/LLMs-from-scratch : ch07/ @ 28c65cd",
            notes="JSON lists of {instruction, input, output} (+ chosen, rejected); the preference answers were "
            "written by Llama 3.1 70B",
        ),
        Dataset(
            "crows-pairs",
            "CrowS-Pairs: 1,508 sentence pairs, more vs less stereotyping, 9 bias types (offensive by design)",
            (DataFile("bias/crows_pairs/crows_pairs_anonymized.csv",
                      "dfb36986ce0502abbaf7055b9176da3d08d48e07df1251991b5dfbcbceab9d0c", 437764,
                      _gh(*_CROWS, "data/crows_pairs_anonymized.csv")),),
            license="CC BY-SA 4.0",
            citation="Nangia, N., Vania, C., Bhalerao, R. and Bowman, S. R. (2020). CrowS-Pairs: A Challenge "
            "Dataset for Measuring Social Biases in Masked Language Models. EMNLP 2020.",
            source="nyu-mll/crows-pairs : data/crows_pairs_anonymized.csv @ 8aaac11",
        ),
        Dataset(
            "winobias",
            "WinoBias: pro- and anti-stereotyped coreference sentences and occupation lists",
            tuple(DataFile(f"bias/winobias/{n}", sha, size, _gh(*_WINO, f"WinoBias/wino/data/{n}"))
                  for n, (sha, size) in _WINO_FILES.items()),
            license="MIT (Copyright 2020 NLP @UCLA)",
            citation="Zhao, J., Wang, T., Yatskar, M., Ordonez, V. and Chang, K.-W. (2018). Gender Bias in "
            "Coreference Resolution: Evaluation and Debiasing Methods. NAACL 2018.",
            source="uclanlp/corefBias : WinoBias/wino/data/ @ 0bce984",
        ),
        Dataset(
            "weat",
            "The word sets of the WEAT association tests (31 sets)",
            tuple(DataFile(f"bias/weat/{n}", sha, size, _gh(*_WEAT, f"wefe/datasets/data/{n}" if n == "WEAT.json"
                                                              else n))
                  for n, sha, size in [
                      ("WEAT.json", "1a4a448a1825b29c67a7ebb7733343084b015f5b8ed720b2d9e193840a3d49a1", 7255),
                      ("LICENSE", "697e89a2420cf23fe5afc4a7a8a177a5d70f3444ecccb771f07d7510b4249841", 1087),
                  ]),
            license="MIT (Copyright 2025 WEFE Team)",
            citation="Caliskan, A., Bryson, J. J. and Narayanan, A. (2017). Semantics derived automatically "
            "from language corpora contain human-like biases. Science 356(6334).",
            source="dccuchile/wefe : wefe/datasets/data/WEAT.json @ 1998132",
        ),
    ]
}


def mirror_dir() -> Path | None:
    """The offline mirror folder named by $MINILM_DATA_DIR, or None."""
    value = os.environ.get(MIRROR_VAR)
    return Path(value).expanduser() if value else None


def cache_root() -> Path:
    """The root of minilm's user cache: $MINILM_CACHE_DIR, else the OS cache folder."""
    base = os.environ.get(CACHE_VAR)
    return Path(base).expanduser() if base else Path(pooch.os_cache("minilm"))


def cache_dir() -> Path:
    """The user cache for datasets: cache_root()/data."""
    return cache_root() / "data"


def sha256_of(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check(path: Path, spec: DataFile, dataset: str, where: str) -> None:
    actual = sha256_of(path)
    if actual != spec.sha256:
        raise DataError(
            f"dataset {dataset!r}: {path} ({where}) has sha256 {actual}, expected {spec.sha256}. "
            f"The file is corrupt or not the registered version; the course refuses it. "
            f"Delete it and fetch it again (url: {spec.url})."
        )


def _check_bytes(data: bytes, spec: DataFile, dataset: str, what: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != spec.sha256:
        raise DataError(f"dataset {dataset!r}: {what} has sha256 {actual}, expected {spec.sha256}; refused.")


def _mirror_problem(spec: DataFile) -> str:
    """What is wrong with $MINILM_DATA_DIR for `spec`, in words ('' when it is unset)."""
    mirror = mirror_dir()
    if mirror is None:
        return f"{MIRROR_VAR} is not set"
    if not mirror.is_dir():
        return f"{MIRROR_VAR} is set to {mirror}, which does not exist (or is not a folder)"
    return f"{MIRROR_VAR}={mirror} holds no file '{spec.path}'"


def _offline_error(dataset: str, spec: DataFile, exc: Exception) -> DataError:
    return DataError(
        f"dataset {dataset!r}: could not download {spec.url} ({type(exc).__name__}: {exc}); "
        f"{_mirror_problem(spec)}. Without internet, point {MIRROR_VAR} at a folder holding "
        f"'{spec.path}': in a shell `export {MIRROR_VAR}=/path/to/shared/data`, in a notebook a cell "
        f"`%env {MIRROR_VAR}=/path/to/shared/data` (then run this cell again)."
    )


def _atomic_write(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _download(dataset: str, spec: DataFile, dest: Path) -> None:
    """Download `spec` to `dest` (via pooch: temp file, hash check, rename)."""
    try:
        if spec.zip_member:
            zpath = pooch.retrieve(spec.url, known_hash=f"sha256:{spec.zip_sha256}",
                                   path=cache_dir() / "_downloads", progressbar=True)
            with zipfile.ZipFile(zpath) as z:
                data = z.read(spec.zip_member)
            _check_bytes(data, spec, dataset, f"member {spec.zip_member} of {spec.url}")
            _atomic_write(dest, data)
        elif dataset == "tang":
            data = build_tang(spec.url)
            _check_bytes(data, spec, dataset, "the corpus built from the upstream JSON files")
            _atomic_write(dest, data)  # only the checked bytes are ever written
        else:
            pooch.retrieve(spec.url, known_hash=f"sha256:{spec.sha256}", fname=dest.name,
                           path=dest.parent, progressbar=True)
    except DataError:
        raise
    except ValueError as exc:  # pooch: hash mismatch (the temp file is already removed)
        raise DataError(f"dataset {dataset!r}: the download of {spec.url} was refused: {exc}") from exc
    except Exception as exc:  # network errors of every kind
        raise _offline_error(dataset, spec, exc) from exc


def fetch(name: str) -> dict[str, Path]:
    """Resolve every file of dataset `name`: mirror, then cache, then download. Returns {path: local Path}."""
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; the registry has: {', '.join(DATASETS)}")
    ds = DATASETS[name]
    out: dict[str, Path] = {}
    mirror = mirror_dir()
    if mirror is not None and not mirror.is_dir():
        warnings.warn(f"{MIRROR_VAR} is set to {mirror}, which does not exist (or is not a folder): "
                      "datasets come from the cache or the internet instead", stacklevel=2)
    for spec in ds.files:
        if mirror is not None and (mirror / spec.path).is_file():
            path = mirror / spec.path
            _check(path, spec, name, f"in the mirror {MIRROR_VAR}={mirror}")
        else:
            path = cache_dir() / spec.path
            if path.is_file() and sha256_of(path) != spec.sha256:
                path.unlink()  # a corrupt cached copy is never used: fetch it again
            if not path.is_file():
                _download(name, spec, path)
            _check(path, spec, name, "in the cache")
        out[spec.path] = path
    return out


def path(name: str, file: str | None = None) -> Path:
    """The local path of one file of dataset `name` (its only file when `file` is None)."""
    files = fetch(name)
    if file is None:
        if len(files) != 1:
            raise ValueError(f"dataset {name!r} has several files; pass one of {list(files)}")
        return next(iter(files.values()))
    matches = [p for k, p in files.items() if k == file or k.endswith("/" + file)]
    if not matches:
        raise KeyError(f"dataset {name!r} has no file {file!r}; it has {list(files)}")
    return matches[0]


def load_text(name: str) -> str:
    """The text of a one-file corpus (tinyshakespeare, names, tang) as a str."""
    return path(name).read_text(encoding="utf-8")


# --- the Tang corpus recipe (see shared/data/README.md) ---------------------------------
_H = "[\u4e00-\u9fff]"
_COUPLET = f"{_H}{{5}}，{_H}{{5}}。"
TANG_POEM = re.compile(f"^(?:{_COUPLET}){{2}}$|^(?:{_COUPLET}){{4}}$")


def tang_from_json(files: list[list[dict]]) -> bytes:
    """Build the Tang corpus from the parsed upstream JSON files, in order: keep 5-char poems, dedupe."""
    seen: set[str] = set()
    out: list[str] = []
    for poems in files:
        for p in poems:
            body = "".join(p["paragraphs"])
            if TANG_POEM.match(body) and body not in seen:
                seen.add(body)
                out.append(body)
    return "".join(b + "\n" for b in out).encode("utf-8")


def build_tang(url_template: str) -> bytes:
    """Download the 58 upstream JSON files (cached by pooch) and build the corpus bytes."""
    folder = cache_dir() / "_downloads" / "tang_json"
    files = []
    for n in range(0, 58000, 1000):
        p = pooch.retrieve(url_template.format(n=n), known_hash=None, fname=f"poet.tang.{n}.json",
                           path=folder, progressbar=True)
        files.append(json.loads(Path(p).read_text(encoding="utf-8")))
    return tang_from_json(files)


def describe() -> list[dict]:
    """One row per dataset: name, files, bytes, license, citation (for tables in 00 and the README)."""
    return [
        {"name": d.name, "files": len(d.files), "bytes": sum(f.size for f in d.files),
         "license": d.license, "citation": d.citation, "description": d.description}
        for d in DATASETS.values()
    ]
