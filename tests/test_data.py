"""vaelib.data: IDX parsing, verified downloads from a local server, the bundled subset,
binarization."""

import gzip
import hashlib
import http.server
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import vaelib.data as data
from vaelib.data import (IDXError, binarize, fixed_binarization, load_mnist, load_mnist_subset,
                         parse_idx, read_idx, to_unit_interval)

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file, written by hand from the format's definition."""
    sizes = b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    header = bytes([0, 0, 0x08, array.ndim]) + sizes
    return header + array.astype(np.uint8).tobytes()


# ------------------------------------------------------------------------------------- IDX parsing

def test_parse_idx_roundtrip_images_and_labels():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(5,), dtype=np.uint8)
    np.testing.assert_array_equal(parse_idx(idx_bytes(images)), images)
    np.testing.assert_array_equal(parse_idx(idx_bytes(labels)), labels)


def test_read_idx_accepts_gzip_and_raw(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "raw").write_bytes(idx_bytes(images))
    (tmp_path / "any-name").write_bytes(gzip.compress(idx_bytes(images)))
    np.testing.assert_array_equal(read_idx(tmp_path / "raw"), images)
    np.testing.assert_array_equal(read_idx(tmp_path / "any-name"), images)


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:-1], "truncated"),
    (lambda b: b[:10], "truncated"),
    (lambda b: b[:2], "truncated"),
    (lambda b: b + b"\0", "longer"),
    (lambda b: b"\x00\x00\x0d" + b[3:], "magic number"),  # float IDX, not unsigned bytes
    (lambda b: b"\x1f\x00" + b[2:], "magic number"),
])
def test_parse_idx_rejects_bad_files(mutate, message):
    good = idx_bytes(np.zeros((3, 2, 2), dtype=np.uint8))
    with pytest.raises(IDXError, match=message):
        parse_idx(mutate(good))


def test_read_idx_rejects_damaged_gzip(tmp_path):
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((4, 4), dtype=np.uint8)))[:-6])
    with pytest.raises(IDXError, match="damaged gzip"):
        read_idx(path)


# ------------------------------------------------------------------------- load_mnist on test files

@pytest.fixture
def fake_mnist(monkeypatch):
    """Small IDX files standing in for MNIST, with their SHA-256 swapped into vaelib.data."""
    rng = np.random.default_rng(1)
    arrays = {
        "train_images": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, (6,), dtype=np.uint8),
        "test_images": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, (3,), dtype=np.uint8),
    }
    files, table = {}, {}
    for key, (stem, _) in data.MNIST_FILES.items():
        content = idx_bytes(arrays[key])
        files[stem] = content
        table[key] = (stem, hashlib.sha256(content).hexdigest())
    monkeypatch.setattr(data, "MNIST_FILES", table)
    return arrays, files


def check_loaded(mnist, arrays):
    for key, array in arrays.items():
        value = getattr(mnist, key)
        assert value.dtype == (torch.int64 if "labels" in key else torch.uint8)
        np.testing.assert_array_equal(value.numpy(), array)


def test_load_mnist_from_root_gz_or_raw(tmp_path, fake_mnist):
    arrays, files = fake_mnist
    for i, (stem, content) in enumerate(files.items()):  # mix gzipped and raw files
        if i % 2:
            (tmp_path / stem).write_bytes(content)
        else:
            (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(content))
    check_loaded(load_mnist(tmp_path, download=False), arrays)


def test_load_mnist_uses_vaelib_data_env(tmp_path, fake_mnist, monkeypatch):
    arrays, files = fake_mnist
    for stem, content in files.items():
        (tmp_path / stem).write_bytes(content)
    monkeypatch.setenv("VAELIB_DATA", str(tmp_path))
    check_loaded(load_mnist(download=False), arrays)


def test_load_mnist_cache_folder_when_nothing_given(tmp_path, fake_mnist, monkeypatch):
    monkeypatch.delenv("VAELIB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="load_mnist_subset"):
        load_mnist(download=False)
    assert (tmp_path / "vaelib" / "mnist").is_dir()


def test_load_mnist_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an existing folder"):
        load_mnist(tmp_path / "nope")


def test_load_mnist_rejects_a_file_with_the_wrong_hash_and_keeps_it(tmp_path, fake_mnist):
    _, files = fake_mnist
    for stem, content in files.items():
        (tmp_path / stem).write_bytes(content)
    stem = next(iter(files))
    tampered = bytearray(files[stem])
    tampered[-1] ^= 1
    (tmp_path / stem).write_bytes(bytes(tampered))
    with pytest.raises(IDXError, match="SHA-256"):
        load_mnist(tmp_path, download=False)
    assert (tmp_path / stem).read_bytes() == bytes(tampered)  # the user's file is not deleted


# ------------------------------------------------------------------ downloads from a local server

class Server:
    """An http.server on 127.0.0.1 serving a dict path -> bytes; 'drop' paths send half and hang
    up."""

    def __init__(self, files: dict[str, bytes], drop: set[str] = frozenset()):
        outer = self
        self.files, self.drop, self.requests = files, drop, []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.requests.append(self.path)
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in outer.drop:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def served(files, prefix):
    return {f"{prefix}/{stem}.gz": gzip.compress(content) for stem, content in files.items()}


def no_partial_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".part")]


def test_download_good_files(tmp_path, fake_mnist):
    arrays, files = fake_mnist
    with Server(served(files, "/good")) as server:
        mnist = load_mnist(tmp_path, mirrors=(server.url + "/good/",), timeout=10)
    check_loaded(mnist, arrays)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{s}.gz" for s in files)
    # A second call reads the cache and asks the server for nothing.
    check_loaded(load_mnist(tmp_path, download=False), arrays)


def test_download_skips_a_corrupt_mirror_and_a_dropped_connection(tmp_path, fake_mnist):
    arrays, files = fake_mnist
    corrupt = {f"/bad/{stem}.gz": gzip.compress(content[:-1] + b"\x01")
               for stem, content in files.items()}
    dropped = served(files, "/drop")
    with Server({**corrupt, **dropped, **served(files, "/good")}, drop=set(dropped)) as server:
        mirrors = (server.url + "/bad", server.url + "/drop", server.url + "/good")
        mnist = load_mnist(tmp_path, mirrors=mirrors, timeout=10)
        assert len(server.requests) == 3 * len(files)
    check_loaded(mnist, arrays)
    assert no_partial_files(tmp_path)


def test_failed_download_leaves_nothing_that_could_pass_as_good(tmp_path, fake_mnist):
    _, files = fake_mnist
    dropped = served(files, "/drop")
    with Server(dropped, drop=set(dropped)) as server:
        with pytest.raises(ConnectionError, match="offline") as info:
            load_mnist(tmp_path, mirrors=(server.url + "/drop", server.url + "/missing"),
                       timeout=10)
    assert "404" in str(info.value) and "load_mnist_subset" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_offline_error_says_what_to_do(tmp_path, fake_mnist):
    # Port 9 on 127.0.0.1 (discard) has no server here: the connection is refused at once.
    with pytest.raises(ConnectionError) as info:
        load_mnist(tmp_path, mirrors=("http://127.0.0.1:9/",), timeout=5)
    message = str(info.value)
    assert str(tmp_path) in message and "VAELIB_DATA" in message and "load_mnist_subset" in message


# ------------------------------------------------------------------------------- the bundled subset

def test_subset_shapes_dtypes_and_label_counts():
    mnist = load_mnist_subset()
    assert mnist.train_images.shape == (10_000, 28, 28)
    assert mnist.test_images.shape == (2_000, 28, 28)
    assert mnist.train_images.dtype == torch.uint8 and mnist.train_labels.dtype == torch.int64
    # Label counts of the first 10,000 training and first 2,000 test images of MNIST.
    assert mnist.train_labels.bincount().tolist() == [1001, 1127, 991, 1032, 980, 863, 1014, 1070,
                                                      944, 978]
    assert mnist.test_labels.bincount().tolist() == [175, 234, 219, 207, 217, 179, 178, 205, 192,
                                                     194]
    assert mnist.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


@pytest.mark.skipif(not SHARED_MNIST.is_dir(),
                    reason="the real MNIST files are not beside the repo")
def test_subset_matches_the_first_rows_of_real_mnist():
    full = load_mnist(SHARED_MNIST, download=False)
    assert full.train_labels.bincount().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265,
                                                     5851, 5949]
    assert full.test_labels.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974,
                                                    1009]
    assert abs(full.train_images.double().mean().item() - 33.318) < 1e-3
    subset = load_mnist_subset()
    assert torch.equal(subset.train_images, full.train_images[:10_000])
    assert torch.equal(subset.train_labels, full.train_labels[:10_000])
    assert torch.equal(subset.test_images, full.test_images[:2_000])
    assert torch.equal(subset.test_labels, full.test_labels[:2_000])


@pytest.mark.skipif(not SHARED_MNIST.is_dir(),
                    reason="the real MNIST files are not beside the repo")
def test_subset_build_script_is_reproducible(tmp_path):
    from scripts.make_mnist_subset import main

    out = tmp_path / "subset.npz"
    main(["--source", str(SHARED_MNIST), "--out", str(out)])
    bundled = Path(data.__file__).parent / "data" / "mnist_subset.npz"
    assert out.read_bytes() == bundled.read_bytes()


# ------------------------------------------------------------------------------------ binarization

def test_to_unit_interval():
    images = torch.tensor([[[0, 255], [51, 102]]], dtype=torch.uint8)
    x = to_unit_interval(images)
    assert x.shape == (1, 4) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.tensor([[0.0, 1.0, 0.2, 0.4]]))
    with pytest.raises(TypeError, match="uint8"):
        to_unit_interval(x)


def test_binarize_is_bernoulli_of_the_pixel():
    # 200,000 draws per pixel value: the frequency of ones is within 5 standard errors of p.
    p = torch.tensor([0.0, 0.1, 0.5, 0.93, 1.0]).repeat(200_000, 1)
    x = binarize(p, generator=torch.Generator().manual_seed(0))
    assert x.shape == p.shape and x.dtype == p.dtype
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    freq = x.mean(0)
    se = (p[0] * (1 - p[0]) / 200_000).sqrt()
    assert ((freq - p[0]).abs() <= 5 * se + 1e-12).all()
    assert freq[0] == 0 and freq[-1] == 1


def test_binarize_is_dynamic_and_fixed_binarization_is_not():
    x = torch.full((1000,), 0.5)
    g = torch.Generator().manual_seed(0)
    assert not torch.equal(binarize(x, g), binarize(x, g))
    assert torch.equal(fixed_binarization(x, seed=3), fixed_binarization(x, seed=3))
    assert not torch.equal(fixed_binarization(x, seed=3), fixed_binarization(x, seed=4))


@pytest.mark.parametrize("bad", [torch.tensor([1.5]), torch.tensor([-0.1])])
def test_binarize_rejects_values_outside_unit_interval(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        binarize(bad)
    with pytest.raises(TypeError, match="to_unit_interval"):
        binarize(torch.tensor([1], dtype=torch.uint8))


# ------------------------------------------------------------ shared folders and leftovers

def test_downloaded_files_follow_the_umask(tmp_path, fake_mnist):
    # A shared VAELIB_DATA folder: with umask 022 the files must be readable by the other users.
    _, files = fake_mnist
    previous = os.umask(0o022)
    try:
        with Server(served(files, "/good")) as server:
            load_mnist(tmp_path, mirrors=(server.url + "/good/",), timeout=10)
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {f"{stem}.gz": 0o644 for stem in files}


def test_stale_partial_downloads_are_removed(tmp_path, fake_mnist):
    arrays, files = fake_mnist
    stems = list(files)
    stale = tmp_path / f".{stems[0]}.k1ll3d.part"  # left by a download killed an hour ago
    stale.write_bytes(b"half a file")
    an_hour_ago = time.time() - 3700
    os.utime(stale, (an_hour_ago, an_hour_ago))
    live = tmp_path / f".{stems[1]}.busy.part"  # another process may be downloading it right now
    live.write_bytes(b"the first megabyte")
    other = tmp_path / ".notes.part"  # not ours: never touched
    other.write_bytes(b"x")
    os.utime(other, (an_hour_ago, an_hour_ago))
    for stem, content in files.items():
        (tmp_path / stem).write_bytes(content)
    check_loaded(load_mnist(tmp_path, download=False), arrays)
    assert not stale.exists() and live.exists() and other.exists()


@pytest.mark.parametrize("download", [False, True])
def test_a_folder_where_a_file_should_be_is_named(tmp_path, fake_mnist, download):
    _, files = fake_mnist
    stems = list(files)
    for stem, content in files.items():
        if stem != stems[2]:
            (tmp_path / stem).write_bytes(content)
    (tmp_path / f"{stems[2]}.gz").mkdir()  # e.g. an archive unpacked into a folder of that name
    (tmp_path / f"{stems[2]}.gz" / "inside").write_bytes(b"the user's")
    with Server(served(files, "/good")) as server:
        with pytest.raises(IsADirectoryError, match=rf"{stems[2]}.gz is a folder") as info:
            load_mnist(tmp_path, download=download, mirrors=(server.url + "/good/",), timeout=10)
        assert server.requests == []  # nothing downloaded that could not be put in place
    assert "move it away" in str(info.value).lower()
    assert (tmp_path / f"{stems[2]}.gz" / "inside").read_bytes() == b"the user's"


def test_a_broken_symbolic_link_where_a_file_should_be_is_named(tmp_path, fake_mnist):
    _, files = fake_mnist
    stems = list(files)
    for stem, content in files.items():
        if stem != stems[1]:
            (tmp_path / stem).write_bytes(content)
    (tmp_path / stems[1]).symlink_to(tmp_path / "moved" / stems[1])  # the file was moved away
    with pytest.raises(FileNotFoundError, match=rf"{stems[1]} is a broken symbolic link: it points "
                       rf"to .*moved/{stems[1]}, which does not exist"):
        load_mnist(tmp_path, download=False)
