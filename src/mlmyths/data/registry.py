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
    #: Image datasets: ``(C, H, W)`` and the number of classes (what a rehearsal copy imitates).
    image_shape: tuple[int, int, int] | None = None
    num_classes: int = 0

    def required_files(self) -> tuple[RemoteFile, ...]:
        if not self.required:
            return self.files
        return tuple(f for f in self.files if f.name in self.required)


def _idx(base: str, stem: str, sha256: str, size: int) -> RemoteFile:
    return RemoteFile(f"{stem}.gz", f"{base}/{stem}.gz", sha256, size, aliases=(stem,))


_MNIST = "https://storage.googleapis.com/cvdf-datasets/mnist"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
_CIFAR101 = "https://raw.githubusercontent.com/modestyachts/CIFAR-10.1/master"


# The 30 published models' predictions in modestyachts/CIFAR-10.1 (Recht et al. 2018): one line per file
# ``model_predictions/<folder>_predictions/<model>_predictions.json`` as "<folder> <model> <bytes> <sha256>".
_CIFAR101_PREDICTIONS = """
original alexnet_tf_ben                    60001 3c5251a7033db81bcb653062c57471d04713d9bb34b0668d8c79fd5332b41f94
original cudaconvnet                       30000 87045a28e8f6ba958c1a7278c3bff74f59e725707d45a55bd9647e315438783b
original darc                              50002 15fb4c7eb37658aac399c27874c542638ff871f726442321ee635f85bca35336
original densenet_BC_100_12                50002 6ae63cd25bda2cb1a0b1bbe156f48a262fed899a2b4fdfde4d8872babbe74e93
original nas                               50002 a21130caf330f4f5a1a0871b3ba67ca8b60b8904c4ca74cfab3c5988725b6c56
original pyramidnet_basic_110_270          50002 a7bc0ceb9aaa3e3a388e876d941bccdb3637a33d1b17687b2822bdac76d80b8e
original pyramidnet_basic_110_84           50002 e188b9201d21885ad71344b76fe99fc4eedb87c608d62ca1999f7f1f09bbdb82
original random_features_256k_aug          30000 c6db9dfa9a54874b9652dd3e80628aaf0a4f51f28a8595e703333653b3a59f7c
original random_features_256k_no_aug       30000 ae234adaa5fec4a9be3b17b81f4bb6d6ce8468fa1f7259ebce05f9453aa296c0
original random_features_32k_aug           30000 4306ca5563a7d805298b56bb1a50e1265247a1144abd643119a3e59b1f4d3009
original random_features_32k_no_aug        30000 9fbeebf8a5821a46a6bafa8c96e33a97346ea6ddf835a6deb9686f9ab44e5c68
original resnet_basic_110                  50002 784c647488d151fa56fa248cf1292373756c2cd0a18cd949366a477a44f7eb70
original resnet_basic_32                   50002 e14b921e88fbdee79deb797314bbe70d094594f56c0d6174af209c6d5963ae44
original resnet_basic_44                   50002 489f00f0a424f25d0ceb4e51665ac9c785d1875e6d8b138af9651a0dcdcebbed
original resnet_basic_56                   50002 db6bce01824ce3238c1c17eb2a5bb56aaec5e545fb7c8df54a3f4e828d9fb0c1
original resnet_preact_basic_110           50002 4bfa980ebad632079b651afc1fc3da8e175e1285f00761172bdb64fc2393aac8
original resnet_preact_bottleneck_164      50002 e6224ea8a3e1e62b42d4fcde734ea1a7bc9154993eea085e66d8d6534b0362cc
original resnetv2_tf                       50002 d19d05a7cfb4dce7c897023dc6bb2fafe92ee0e8b726e7e3ad01ef719d8f0c59
original resnext_29_4x64d                  50002 00e97fbd7243cf4fa448061c1ceb764dbafd0c8372e8a78bf99d98de90cf4b06
original resnext_29_8x64d                  50002 92dc72a0d29aad475134c5c2945ae84226936966d66ddb3a56daa3d25e7d8844
original shake_drop                        30000 e81b312535dd92b6076e8d905182103dbab0a78b79c7cbbaa0e6984e09892792
original shake_shake_26_2x32d_SSI          50002 050f8d2132ff32fd4d096329d2bac8d250ed8fb27e52763d9d198eac41c3d827
original shake_shake_26_2x64d_SSI_cutout16 50002 3718b7f57eed8724d06db390d1b0d6994b69f0d90318e0b5337d629aa0c2b822
original shake_shake_26_2x64d_SSI          50002 a773bb42b22093463ed6f9ba174cf09a9597ec28f5da3c55e62551964f313f7e
original shake_shake_26_2x96d_SSI          50002 4ff82506a22cd9e2e0423d06cb4d6ad960492fddb9351ddcdc4cb6b00ec5d16d
original vgg16_keras                       50002 c87168134ecea8e382e412a535c6014ef1157d660d1cfe6a6688742d50e7bbf3
original vgg_15_BN_64                      50002 02f684971c8aef83c3a1b097acc7990d946549f79f4491f677fd2dab70e6002d
original wide_resnet_tf                    50002 2394c013c1eef59ecb27383de09aee4e71c72bfd303fbe7b19f1138077d966e9
original wrn_28_10_cutout16                50002 0884875039bab87745570ac9fd98464a917cdde62f0df6a18484e6c8ae1c11c9
original wrn_28_10                         50002 c7260326039cfa44365fa763108acad43e0817d4a0b787e18254ee8e4c241683
v4       alexnet_tf_ben                    12127 205885b626079994dac808e7614c36ef5b9522b704b1d9a17c3b0e8188d014a3
v4       cudaconvnet                        6063 41dce8d52201e8d482e9cc6adab29247ff59eeed230e3fb74105ba0b9e99b66e
v4       darc                              10107 1227eeb469b094a9840d40fae49a85117a8e639b5d0e7bf6f06e64d294fadbc9
v4       densenet_BC_100_12                10107 79a5396fd4bc1a63f7ed9d7727c5ff89acf0f9d96b643059eebec5659d24b026
v4       nas                               10108 88cacda38a8dbc9f7df679850c36d01649333dc4f4e4aa6d023636de23edf77e
v4       pyramidnet_basic_110_270          10107 7ab89fe993e5fe56ae00fbffbe210ff7ecfec6b26caaffbbfb9ebcd8fad9f226
v4       pyramidnet_basic_110_84           10107 da2867924553af54805fedd94830575e23f18841acd101aa8523b9c2e51ebc42
v4       random_features_256k_aug           6063 a23fad6218fbec94aa3ee9f5b70b9d990e3bf408c6c5a90065cca41ef6a48963
v4       random_features_256k_no_aug        6063 a61a8bf4ab908e124475c14ab1e81dccef9d5ead2c97e4d3281b2b35231b2a3c
v4       random_features_32k_aug            6063 95c123cb9d18a0e2e1590b362f4f360a7574061ec13e1b99b01e7723fea82d6d
v4       random_features_32k_no_aug         6063 ec4ad84f044f212ee33a865985f24fad533a9a5a5ac5debd21c3dd9044cfe755
v4       resnet_basic_110                  10107 6470601d5fe8b7ee6e04cbc7c5c8a53c9bab3abffe0c872580770734bc6095ba
v4       resnet_basic_32                   10107 67ae16a917f5edb074ce9a4edcc6f3ed85685df83d3948cbcb461c0844c4a1d1
v4       resnet_basic_44                   10107 552b220e149cea44b0e036e4bde23ef92d566ddab97cc6de7957108b8d8ed99e
v4       resnet_basic_56                   10107 6b744262ae131034f344861e5b87227d54657550481404d01e8fb3754d930b3e
v4       resnet_preact_basic_110           10107 b6d114550432984d3589d5432dff584a7ce3e017707623acae11094869824645
v4       resnet_preact_bottleneck_164      10107 24fc0b45278ec5b709d1897dcfd706662afa84c42bb3f3e37a89ee011a4033e5
v4       resnetv2_tf                       10107 acc014a3592e2e282a326185de04b44721448dd489cb8854ca4f318ec9a4834f
v4       resnext_29_4x64d                  10107 385ca23d8e392c73849844bf4c47537b74be64c098fba1b57c23325e3e2f7b74
v4       resnext_29_8x64d                  10107 fb90b1098f3b71ab48c83ca8a1f6e2b59d554e5918c988fea72a037188d6a1aa
v4       shake_drop                         6063 d598d1593fa34aa332d41212fa5f6ed3e1eb14fe260d91ef1481c81c5b1f4f96
v4       shake_shake_26_2x32d_SSI          10107 62b580044a679a5868170caa2bb5b5d39ed0931125131a0c4f707a11efb484d9
v4       shake_shake_26_2x64d_SSI_cutout16 10107 48659eeaa462c40fe23d4215399a08e0301e5d39e690212266de8cc3dda3f3c3
v4       shake_shake_26_2x64d_SSI          10107 9136aa1945629ffc46af017a2e7eb0576fb88cde523bd45524b8ef9d5ba7cdf4
v4       shake_shake_26_2x96d_SSI          10107 e0d3752c2a17f1dbe6f15f4380c9053c314a8219913d1c06374e1ec9708c6325
v4       vgg16_keras                       10107 bc14d9214f0f1e2efa9197d371d8a178c8201be3c86909722b960e30ee4ae631
v4       vgg_15_BN_64                      10107 5d7fdbfd86008f6e3b288b08c115d6e592d02831208aaaeafd52aa850c5816e3
v4       wide_resnet_tf                    10107 a5a353018eea5ea888c08b503d35424e3bc1bb86b9b7677ab8554e641efd89bd
v4       wrn_28_10_cutout16                10107 26b92cf0008362c197d0dde6af19ae8062ce386b6b6cb8c866b9cf82ae930a6a
v4       wrn_28_10                         10107 98600d9cad20556776a578da22dd2005553ba6c67c24e67643fae9ab9849cdbb
v6       alexnet_tf_ben                    12001 6c29bfb424cda31fcc5e01973015faa48bc592fecc6626853986e24abd6c86ba
v6       cudaconvnet                        6000 1811c09e0e1b6a138df0efb606d5fd6eb3670a637c9615ca31758ace49548240
v6       darc                              10002 d113166b3fe22064b97a956105a00a7d18990a41b9542d7ecf0b3b5dea414cad
v6       densenet_BC_100_12                10002 3382a889c4281cd99264b5948e4919c2fed741175052f57dff4ca2d3cac2428e
v6       nas                               10002 bd54fcf87e473957518ab9db2c93779acfe9ebd079de210f15f11567b0dfc848
v6       pyramidnet_basic_110_270          10002 c675833799332ed943f3d75c70021fbe510c190b4fc629a4cec9c178f0e40dd1
v6       pyramidnet_basic_110_84           10002 d8430146a17c19182bf87523316bcd679af0f0d37fd25af885bad764e26cc1e2
v6       random_features_256k_aug           6000 033ea15e70e79b2887f86b768fec85a8038c7e09379a9153ecf8d54eccf8664f
v6       random_features_256k_no_aug        6000 c847abb251619ba46bad027918e9760d67253eb96e60a44bf477593f9f774e90
v6       random_features_32k_aug            6000 acb01a49124bc3f8f180413c5ee1a629716b591dc7b0bc22fae9cc9cee39f686
v6       random_features_32k_no_aug         6000 8fe2f11b759e0427867d99c716ea550c93f90106ad60ff8c47af5df436963114
v6       resnet_basic_110                  10002 c6324358778cbd1cd01b73316c1e6d4f5d2b5ca3766dcfd4027ace2e33009a00
v6       resnet_basic_32                   10002 9f307158b83ddc9fe43de1d2be4e7dcad07c20966c03f077889bd18acc2d133c
v6       resnet_basic_44                   10002 0438f14b8648b62f53948c190b64a4b8d3330454fdf665fb7f4c419f6942f38c
v6       resnet_basic_56                   10002 22dd6888985bb16e57f178a2ec80d038fec90ae16b553981c8e55c69d780d2d1
v6       resnet_preact_basic_110           10002 52e0e3dace8fd0524d505f13dc968b08570de4fc2bf8dd73b8e6ea905175516e
v6       resnet_preact_bottleneck_164      10002 2519e261401e84802728b45c7a197ad2473d77b681f47f07804d84bbe7e3959c
v6       resnetv2_tf                       10002 30c76e9426344e29e3525c1b0368c5388d57f1b06c6bbd533ff9964074714fdf
v6       resnext_29_4x64d                  10002 cc7fe23b72e10f2e2ce3ca932f39bd64d20cc3e96a554ba9be117294823b3ec1
v6       resnext_29_8x64d                  10002 41b91fde11f65dba9a9d1c73a3f657e9a53cc51b07ec774ae312bd7ab659a153
v6       shake_drop                        12001 e7cf77b61642fa68136414d3ae4e515f29d9a832e4e6eac64dcfc231c5a76629
v6       shake_shake_26_2x32d_SSI          10002 5a2232a8fbcb70555a2591e82dffa4c5dcce914bba9eafd833edec1e435406ba
v6       shake_shake_26_2x64d_SSI_cutout16 10002 d2fd5cacfca91e7ff45f2170c8f407eacd55c32928086179217d5537f4e18cb6
v6       shake_shake_26_2x64d_SSI          10002 703f7c20694c80f398a5dfa54a2fa6e538738e31c4cada6025574288d71e0f21
v6       shake_shake_26_2x96d_SSI          10002 fc2d90186d66ebdfa56d1327ea12e2b52e32da77014d680fbee1a277149459d0
v6       vgg16_keras                       10002 cfe035f4503fdebfe95396c90d785674ec910bb9936230df2ae77b7ba838e95c
v6       vgg_15_BN_64                      10002 632c3cd8cad8a026790f6ea4e45be72f8c0ba4c0d1119a0d64ce9b8c71782224
v6       wide_resnet_tf                    10002 a8687b77ccabcb4aeecf838b297c569dc79707c9691b3aa9d2b4a18fa00a47c5
v6       wrn_28_10_cutout16                10002 90dcdebe08c067275cf10438d52429dd697543e721bea4af7fcfba69eccb7420
v6       wrn_28_10                         10002 9bb947e7d4d9c1d065b37b87204ec67b52f1b79b4784d89cd6ddbc3fa6b95f64
"""


def _cifar101_predictions() -> tuple[RemoteFile, ...]:
    files = []
    for line in _CIFAR101_PREDICTIONS.strip().splitlines():
        folder, model, size, sha256 = line.split()
        path = f"model_predictions/{folder}_predictions/{model}_predictions.json"
        files.append(RemoteFile(path, f"{_CIFAR101}/{path}", sha256, int(size)))
    return tuple(files)


_CIFAR101_LABELS = ("datasets/cifar10.1_v4_labels.npy", "datasets/cifar10.1_v6_labels.npy")

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            "digits",
            "images",
            "UCI handwritten digits, 8x8, 1,797 images (bundled with scikit-learn)",
            embedded=True,
            image_shape=(1, 8, 8),
            num_classes=10,
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
            image_shape=(1, 28, 28),
            num_classes=10,
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
            image_shape=(1, 28, 28),
            num_classes=10,
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
            image_shape=(3, 32, 32),
            num_classes=10,
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
                *_cifar101_predictions(),
            ),
            required=_CIFAR101_LABELS + tuple(f.name for f in _cifar101_predictions()),
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
#: ``rehearsal-NAME``: synthetic data of NAME's shape (see :func:`mlmyths.data.rehearsal`)
REHEARSAL_PREFIX = "rehearsal-"
