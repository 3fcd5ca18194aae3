"""The dataset registry and fetch(): mirror, cache, download, and every way a file can go wrong.

Nothing here touches the internet: downloads are served by a local http.server on 127.0.0.1
or pooch.retrieve is replaced. Each test gets its own cache (MINILM_CACHE_DIR in tmp_path).
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import os
import re
import threading
from pathlib import Path

import pooch
import pytest
import requests

from minilm.data import datasets as data
from minilm.data.datasets import DATASETS, DataError, DataFile, Dataset

COURSE_DATASETS = [
    "tinyshakespeare",
    "names",
    "tang",
    "rt-polarity",
    "movie_reviews",
    "crows-pairs",
    "winobias",
    "weat",
]
UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: nothing listens, the connection is refused


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh, empty user cache and no mirror."""
    monkeypatch.setenv(data.CACHE_VAR, str(tmp_path / "cache"))
    monkeypatch.delenv(data.MIRROR_VAR, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return tmp_path / "cache"


@pytest.fixture
def real_mirror() -> Path:
    value = os.environ.get(data.MIRROR_VAR)
    if not value:
        pytest.skip(
            f"{data.MIRROR_VAR} is unset: no offline mirror to check "
            "(make test sets it to ../shared/data)"
        )
    return Path(value)


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def toy(monkeypatch, content: bytes, url: str, name: str = "toy") -> DataFile:
    """Register a one-file dataset `name`: registered bytes `content`, downloaded from `url`."""
    spec = DataFile(f"{name}.txt", sha(content), len(content), url)
    ds = Dataset(name, "a test dataset", (spec,), license="MIT", citation="none")
    monkeypatch.setitem(DATASETS, name, ds)
    return spec


class Server:
    """Serves `body` at any path on 127.0.0.1; `cut`: close the connection after that many bytes."""

    def __init__(self, body: bytes, cut: int | None = None):
        outer = self
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))  # promises the whole file
                self.end_headers()
                self.wfile.write(body if cut is None else body[:cut])
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/toy.txt"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


# --- the registry --------------------------------------------------------------------------


@pytest.mark.parametrize("name", COURSE_DATASETS)
def test_registry_has_provenance(name):
    ds = DATASETS[name]
    assert ds.license.strip() and ds.citation.strip() and ds.source.strip()
    assert ds.files
    for f in ds.files:
        assert f.url.startswith("https://"), f.url
        assert len(f.sha256) == 64 and int(f.sha256, 16) >= 0
        assert isinstance(f.size, int) and f.size > 0
        assert not Path(f.path).is_absolute() and ".." not in Path(f.path).parts


def test_registry_paths_are_unique():
    paths = [f.path for ds in DATASETS.values() for f in ds.files]
    assert len(paths) == len(set(paths))


def test_describe_sums_sizes():
    rows = {r["name"]: r for r in data.describe()}
    assert set(rows) == set(DATASETS)
    assert rows["tinyshakespeare"]["bytes"] == 1_115_394
    assert rows["winobias"]["files"] == 11


def test_unknown_dataset_lists_the_registry():
    with pytest.raises(KeyError, match="tinyshakespeare"):
        data.fetch("no-such-corpus")


# --- the mirror ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", COURSE_DATASETS)
def test_mirror_matches_registry(real_mirror, name):
    for f in DATASETS[name].files:
        p = real_mirror / f.path
        assert p.is_file(), f"{p} missing from the mirror"
        assert p.stat().st_size == f.size, f.path
        assert data.sha256_of(p) == f.sha256, f.path


def mirror_readme_hashes(mirror: Path) -> dict[str, str]:
    """{path: sha256} as the mirror's own README.md states them (tables and the sha256 list)."""
    text = (mirror / "README.md").read_text(encoding="utf-8")
    sums = re.finditer(r"^([0-9a-f]{64})  (\S+)$", text, re.MULTILINE)  # the sha256sum list
    pairs = {m[2]: m[1] for m in sums}
    table_row = r"^\| `([^`]+)` \| [\d,]+ \| `([0-9a-f]{64})` \|"
    pairs.update({m[1]: m[2] for m in re.finditer(table_row, text, re.MULTILINE)})
    return pairs


def test_every_mirror_file_is_accounted_for(real_mirror):
    # Files of the registry match it; the mirror's other files (e.g. BBQ) match its own README.
    registry = {f.path: f.sha256 for ds in DATASETS.values() for f in ds.files}
    stated = mirror_readme_hashes(real_mirror)
    if not stated:
        pytest.skip("this mirror has no README.md listing sha256s")
    for path, digest in registry.items():
        assert stated.get(path, digest) == digest, f"registry and mirror README disagree on {path}"
    for p in files_under(real_mirror):
        rel = p.relative_to(real_mirror).as_posix()
        if rel == "README.md":
            continue
        expected = registry.get(rel) or stated.get(rel)
        assert expected, f"{rel} is in the mirror but neither in the registry nor in its README"
        assert data.sha256_of(p) == expected, rel


def test_fetch_resolves_from_mirror_without_touching_the_cache(real_mirror, cache, monkeypatch):
    monkeypatch.setenv(data.MIRROR_VAR, str(real_mirror))
    monkeypatch.setattr(pooch, "retrieve", lambda *a, **k: pytest.fail("no download expected"))
    for name in COURSE_DATASETS:
        for rel, p in data.fetch(name).items():
            assert p == real_mirror / rel
    assert files_under(cache) == []


def test_corpus_facts_from_the_mirror(real_mirror, monkeypatch):
    # The facts the mirror's README states about the three corpora the course trains on.
    monkeypatch.setenv(data.MIRROR_VAR, str(real_mirror))
    shakespeare = data.load_text("tinyshakespeare")
    assert len(shakespeare) == 1_115_394 and len(set(shakespeare)) == 65 and shakespeare.isascii()
    assert shakespeare.count("\n") == 40_000
    names = data.load_text("names")
    assert len(names.split("\n")) == 32_033 and set(names) == set("abcdefghijklmnopqrstuvwxyz\n")
    tang = data.load_text("tang")
    assert len(tang) == 786_956 and len(set(tang)) == 5_928


def test_movie_reviews_facts_from_the_mirror(real_mirror, monkeypatch):
    # The mirror README's facts about movie_reviews.zip: 2,004 members, 1,000 + 1,000 reviews, 64,720 lines.
    import zipfile

    monkeypatch.setenv(data.MIRROR_VAR, str(real_mirror))
    path = data.path("movie_reviews")
    assert path == real_mirror / "sentiment/movie_reviews.zip"
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        reviews = [i.filename for i in infos if i.filename.endswith(".txt")]
        assert len(infos) == 2004 and sum(i.file_size for i in infos) == 7_790_571
        assert sum("/pos/" in n for n in reviews) == 1000 and sum("/neg/" in n for n in reviews) == 1000
        assert sum(z.read(n).decode("utf-8").count("\n") for n in reviews) == 64_720


def test_path_picks_one_file(real_mirror, monkeypatch):
    monkeypatch.setenv(data.MIRROR_VAR, str(real_mirror))
    assert data.path("rt-polarity", "rt-polarity.pos") == real_mirror / "sentiment/rt-polarity.pos"
    with pytest.raises(ValueError, match="several files"):
        data.path("rt-polarity")
    with pytest.raises(KeyError, match="no file"):
        data.path("rt-polarity", "missing.txt")


def test_tang_mirror_lines_follow_the_recipe(real_mirror):
    # Rebuilding the exact bytes needs the 58 upstream JSON files (offline: not possible), so check
    # the mirror's file against the recipe's rule line by line, and its advertised counts.
    lines = (real_mirror / "tang_5char_poems.txt").read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""  # every line ends in \n, no trailing blank line
    poems = lines[:-1]
    assert len(poems) == 17_876
    assert all(data.TANG_POEM.match(p) for p in poems)
    assert len(set(poems)) == len(poems)  # deduplicated
    assert sum(len(p) == 24 for p in poems) == 3_707  # quatrains; the rest are regulated verse
    assert sum(len(p) == 48 for p in poems) == 14_169


def test_corrupt_mirror_file_is_refused_with_both_hashes(cache, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    spec = DATASETS["names"].files[0]
    (mirror / spec.path).write_bytes(b"emma\nolivia\n")  # not the registered bytes
    monkeypatch.setenv(data.MIRROR_VAR, str(mirror))
    with pytest.raises(DataError) as e:
        data.fetch("names")
    msg = str(e.value)
    assert "names" in msg and spec.sha256 in msg and sha(b"emma\nolivia\n") in msg
    assert data.MIRROR_VAR in msg


# --- offline, no mirror --------------------------------------------------------------------


@pytest.mark.parametrize("name", COURSE_DATASETS)
def test_offline_without_mirror_names_dataset_url_and_variable(cache, monkeypatch, name):
    asked = []

    def no_network(url, *args, **kwargs):
        asked.append(url)
        raise requests.exceptions.ConnectionError("no route to host (test)")

    monkeypatch.setattr(pooch, "retrieve", no_network)
    with pytest.raises(DataError) as e:
        data.fetch(name)
    msg = str(e.value)
    spec = DATASETS[name].files[0]
    assert repr(name) in msg and spec.url in msg and data.MIRROR_VAR in msg
    assert asked, "a download should have been attempted"
    assert not [p for p in files_under(cache) if p.name.startswith(Path(spec.path).name)]


def test_offline_real_socket(cache, monkeypatch):
    toy(monkeypatch, b"hello\n", UNREACHABLE + "toy.txt")
    with pytest.raises(DataError) as e:
        data.fetch("toy")
    msg = str(e.value)
    assert "'toy'" in msg and UNREACHABLE + "toy.txt" in msg and data.MIRROR_VAR in msg
    assert files_under(cache) == []


def test_offline_error_gives_the_notebook_form_and_says_what_is_wrong_with_the_mirror(cache, monkeypatch,
                                                                                     tmp_path):
    toy(monkeypatch, b"hello\n", UNREACHABLE + "toy.txt")
    with pytest.raises(DataError) as e:
        data.fetch("toy")
    msg = str(e.value)
    assert f"%env {data.MIRROR_VAR}=" in msg and f"export {data.MIRROR_VAR}=" in msg
    assert f"{data.MIRROR_VAR} is not set" in msg
    missing = tmp_path / "no-such-folder"
    monkeypatch.setenv(data.MIRROR_VAR, str(missing))
    with pytest.warns(UserWarning, match="does not exist"), pytest.raises(DataError) as e:
        data.fetch("toy")
    assert f"{data.MIRROR_VAR} is set to {missing}, which does not exist" in str(e.value)
    monkeypatch.setenv(data.MIRROR_VAR, str(tmp_path))  # a folder without the file
    with pytest.raises(DataError) as e:
        data.fetch("toy")
    assert f"{data.MIRROR_VAR}={tmp_path} holds no file 'toy.txt'" in str(e.value)


# --- downloads -----------------------------------------------------------------------------


def test_download_lands_in_cache_once(cache, monkeypatch):
    body = b"first line\nsecond line\n" * 1000
    with Server(body) as srv:
        toy(monkeypatch, body, srv.url)
        p = data.fetch("toy")["toy.txt"]
        assert p == cache / "data" / "toy.txt" and p.read_bytes() == body
        data.fetch("toy")  # second call: from the cache
        assert srv.requests == 1
    assert files_under(cache) == [p]


def test_interrupted_download_leaves_no_file(cache, monkeypatch):
    body = os.urandom(200_000)
    with Server(body, cut=50_000) as srv:
        toy(monkeypatch, body, srv.url)
        with pytest.raises(DataError) as e:
            data.fetch("toy")
        assert srv.requests >= 1
    assert srv.url in str(e.value)
    assert files_under(cache) == []  # neither toy.txt nor a temporary/.part file


def test_wrong_hash_download_is_refused_and_leaves_nothing(cache, monkeypatch):
    good, bad = b"a" * 5000, b"b" * 5000
    with Server(bad) as srv:
        toy(monkeypatch, good, srv.url)
        with pytest.raises(DataError) as e:
            data.fetch("toy")
    msg = str(e.value)
    assert "'toy'" in msg and "refused" in msg and sha(good) in msg and sha(bad) in msg
    assert files_under(cache) == []


def test_corrupt_cached_file_is_deleted_and_not_used(cache, monkeypatch):
    good = b"the registered bytes\n"
    toy(monkeypatch, good, UNREACHABLE + "toy.txt")
    cached = cache / "data" / "toy.txt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"half of the regis")
    with pytest.raises(DataError):  # offline: cannot replace it, but must not use it either
        data.fetch("toy")
    assert not cached.exists()

    cached.write_bytes(b"half of the regis")
    with Server(good) as srv:
        toy(monkeypatch, good, srv.url)
        p = data.fetch("toy")["toy.txt"]
        assert srv.requests == 1
    assert p == cached and p.read_bytes() == good


def test_zip_member_download(cache, monkeypatch):
    # rt-polarity comes as members of one zip: each member is checked after extraction.
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("pack/a.txt", b"good movie\n")
    zbytes = buf.getvalue()
    spec = DataFile(
        "zipped/a.txt",
        sha(b"good movie\n"),
        11,
        "http://example.invalid/p.zip",
        "pack/a.txt",
        sha(zbytes),
    )
    monkeypatch.setitem(DATASETS, "ziptoy", Dataset("ziptoy", "zip", (spec,), "MIT", "none"))

    def fake_retrieve(url, known_hash, path, **kwargs):
        assert known_hash == f"sha256:{sha(zbytes)}"
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "p.zip").write_bytes(zbytes)
        return str(Path(path) / "p.zip")

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    assert data.path("ziptoy").read_bytes() == b"good movie\n"


# --- the Tang recipe -----------------------------------------------------------------------

Q1 = "白日依山盡，黃河入海流。欲窮千里目，更上一層樓。"  # a quatrain, 24 chars
Q2 = "床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。"
L8 = Q1 + Q2  # 48 chars: the shape of regulated verse


def poem(*paragraphs: str) -> dict:
    return {"title": "t", "author": "a", "paragraphs": list(paragraphs)}


def test_tang_from_json_filters_dedupes_and_keeps_order():
    files = [
        [
            poem(Q2[:12], Q2[12:]),
            poem("白日依山盡，黃河入海流。"),
            poem(Q1[:12], Q1[12:]),
        ],  # 2nd: one couplet only
        [
            poem(L8[:24], L8[24:]),
            poem(Q2),
            poem("白日依山□，黃河入海流。欲窮千里目，更上一層樓。"),
        ],  # dup, □
        [
            poem("白日依山盡，黃河入海流，欲窮千里目，更上一層樓。"),  # wrong punctuation
            poem("白日依山盡兮，黃河入海流。欲窮千里目，更上一層樓。"),  # 6-char line
            poem(
                "白日依山盡，黃河入海流。欲窮千里目，更上一層樓。床前明月光，疑是地上霜。"
            ),  # 3 couplets
            poem("abcde，fghij。klmno，pqrst。"),
        ],  # not CJK
    ]
    out = data.tang_from_json(files)
    assert out == f"{Q2}\n{Q1}\n{L8}\n".encode()


def test_build_tang_reads_the_58_upstream_files_in_order(cache, monkeypatch):
    urls = []

    def fake_retrieve(url, known_hash, fname, path, **kwargs):
        urls.append(url)
        n = int(fname.split(".")[2])
        p = Path(path) / fname
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(
            json.dumps(
                [poem(Q1)] if n == 0 else [poem(Q2)] if n == 57000 else [], ensure_ascii=False
            ),
            encoding="utf-8",
        )
        return str(p)

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    out = data.build_tang(DATASETS["tang"].files[0].url)
    assert out == f"{Q1}\n{Q2}\n".encode()
    assert len(urls) == 58
    assert urls[0].endswith("/%E5%85%A8%E5%94%90%E8%AF%97/poet.tang.0.json")
    assert urls[-1].endswith("/poet.tang.57000.json")
    assert all("{" not in u and "%7B" not in u for u in urls)


def test_tang_build_failure_leaves_no_corpus(cache, monkeypatch):
    monkeypatch.setattr(
        data, "build_tang", lambda url: (_ for _ in ()).throw(requests.ConnectionError("down"))
    )
    with pytest.raises(DataError, match="tang"):
        data.fetch("tang")
    assert not (cache / "data" / "tang_5char_poems.txt").exists()


def test_tang_wrong_build_is_refused(cache, monkeypatch):
    monkeypatch.setattr(data, "build_tang", lambda url: f"{Q1}\n".encode())
    with pytest.raises(DataError) as e:
        data.fetch("tang")
    assert DATASETS["tang"].files[0].sha256 in str(e.value) and sha(f"{Q1}\n".encode()) in str(
        e.value
    )
    assert files_under(cache / "data") == []  # the wrong corpus was never written


def test_dataclass_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DATASETS["names"].files[0].sha256 = "0" * 64  # type: ignore[misc]
