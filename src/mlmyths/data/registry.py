"""What datasets mlmyths knows: names, files, official sources and checksums.

A :class:`DatasetSpec` lists the files a dataset needs and where each comes from.
Local copies are searched first (see :mod:`mlmyths.data.store`); downloads are
verified against the SHA-256 listed here (the official files' digests, as also
published in TensorFlow Datasets' checksum lists).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its name on disk, official URL, size and SHA-256."""

    name: str
    url: str
    sha256: str
    size: int
    #: Other names under which a local copy is accepted (e.g. the decompressed file).
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str  # "images" | "text" | "files"
    description: str
    files: tuple[RemoteFile, ...] = ()
    #: Directories where an operating-system package installs the files.
    system_dirs: tuple[str, ...] = ()
    #: What to tell a user who has no copy and no network.
    install_hint: str = ""
    #: True when the data ships with a Python dependency and is always available.
    embedded: bool = False
    #: Only these files must be present locally (default: all of ``files``).
    required: tuple[str, ...] = field(default=())

    def required_files(self) -> tuple[RemoteFile, ...]:
        if not self.required:
            return self.files
        return tuple(f for f in self.files if f.name in self.required)


def _idx(base: str, stem: str, sha256: str, size: int) -> RemoteFile:
    return RemoteFile(f"{stem}.gz", f"{base}/{stem}.gz", sha256, size, aliases=(stem,))


_MNIST = "https://storage.googleapis.com/cvdf-datasets/mnist"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
_CIFAR101 = "https://raw.githubusercontent.com/modestyachts/CIFAR-10.1/master"

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            "digits",
            "images",
            "UCI handwritten digits, 8x8, 1,797 images (bundled with scikit-learn)",
            embedded=True,
        ),
        DatasetSpec(
            "mnist",
            "images",
            "MNIST handwritten digits, 28x28, 60,000 train / 10,000 test",
            files=(
                _idx(_MNIST, "train-images-idx3-ubyte", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
                _idx(_MNIST, "train-labels-idx1-ubyte", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
                _idx(_MNIST, "t10k-images-idx3-ubyte", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
                _idx(_MNIST, "t10k-labels-idx1-ubyte", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
            ),
            install_hint="run `mlmyths data fetch mnist` with network access",
        ),
        DatasetSpec(
            "fashion-mnist",
            "images",
            "Fashion-MNIST clothing images, 28x28, 60,000 train / 10,000 test",
            files=(
                _idx(_FASHION, "train-images-idx3-ubyte", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
                _idx(_FASHION, "train-labels-idx1-ubyte", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
                _idx(_FASHION, "t10k-images-idx3-ubyte", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
                _idx(_FASHION, "t10k-labels-idx1-ubyte", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
            ),
            system_dirs=("/usr/share/datasets/fashion-mnist",),
            install_hint="on Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist`; "
            "or run `mlmyths data fetch fashion-mnist` with network access",
        ),
        DatasetSpec(
            "cifar10",
            "images",
            "CIFAR-10 (binary version), 32x32 colour, 50,000 train / 10,000 test",
            files=(
                RemoteFile(
                    "cifar-10-binary.tar.gz",
                    "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                    "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                    170052171,
                    aliases=("cifar-10-batches-bin",),
                ),
            ),
            install_hint="run `mlmyths data fetch cifar10` with network access (163 MB)",
        ),
        DatasetSpec(
            "cifar10.1",
            "files",
            "CIFAR-10.1 new test set (Recht et al. 2018): labels, images and 30 published models' predictions",
            files=(
                RemoteFile("datasets/cifar10.1_v4_labels.npy", f"{_CIFAR101}/datasets/cifar10.1_v4_labels.npy",
                           "1f9544300ded199539b6662364ce7fe6c2e1ea9f87408f06db4b1a6184cffb18", 8212),
                RemoteFile("datasets/cifar10.1_v6_labels.npy", f"{_CIFAR101}/datasets/cifar10.1_v6_labels.npy",
                           "ae40beda001693674edc94d925ee8268cfe68905f8f9aff800c8dcdfcd6c9448", 8128),
                RemoteFile("datasets/cifar10.1_v4_data.npy", f"{_CIFAR101}/datasets/cifar10.1_v4_data.npy",
                           "5aaedc268df8f4cffca2ac0cf9e608ae1897a8cddb630c7a850a2ea8f6558e75", 6208640),
                RemoteFile("datasets/cifar10.1_v6_data.npy", f"{_CIFAR101}/datasets/cifar10.1_v6_data.npy",
                           "2997188e5816f5bd545dc77771b6227828c28146049fcecf3fa10775474cacc6", 6144128),
            ),
            required=("datasets/cifar10.1_v4_labels.npy", "datasets/cifar10.1_v6_labels.npy"),
            install_hint="run `mlmyths data fetch cifar10.1` with network access, or point "
            "$MLMYTHS_DATA/cifar10.1 at a clone of github.com/modestyachts/CIFAR-10.1",
        ),
        DatasetSpec(
            "fortunes",
            "text",
            "English quotations and literature from the `fortune` program (about 2.6 MB)",
            system_dirs=("/usr/share/games/fortunes",),
            install_hint="on Debian/Ubuntu: `sudo apt-get install fortunes`",
        ),
        DatasetSpec(
            "python-docs",
            "text",
            "English docstrings of the Python standard library (several MB; always available)",
            embedded=True,
        ),
        DatasetSpec(
            "enwik8",
            "text",
            "First 100 MB of an English Wikipedia dump (Hutter Prize), byte-level LM benchmark",
            files=(
                RemoteFile("enwik8.zip", "http://mattmahoney.net/dc/enwik8.zip",
                           "547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc", 36445475,
                           aliases=("enwik8",)),
            ),
            install_hint="run `mlmyths data fetch enwik8` with network access (35 MB)",
        ),
        DatasetSpec(
            "text8",
            "text",
            "enwik8 lowercased to 27 characters (a-z and space), character-level LM benchmark",
            files=(
                RemoteFile("text8.zip", "http://mattmahoney.net/dc/text8.zip",
                           "a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232", 31344016,
                           aliases=("text8",)),
            ),
            install_hint="run `mlmyths data fetch text8` with network access (30 MB)",
        ),
    ]
}

#: Prefix of the pixel-permuted variant of an image dataset (Toneva et al. 2019, permuted MNIST).
PERMUTED_PREFIX = "permuted-"
