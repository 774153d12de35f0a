"""Where each study comes from: a citation of the publication or repository itself.

Why structured rather than a sentence per preset: `list` needs a short form, `show` and the
report the full one, meta.json the address to follow, and two presets share each of three
documents (a course report, a project write-up, and the CBAM paper several studies use).
Only what the documents themselves say is recorded: where an author, a year or an address is
unknown it is left empty, never guessed.

A preset's ``source`` is a `Source`; a preset file of your own may also give plain text,
which `cite`, `cite_short` and `source_url` pass through.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Source:
    """One cited document, and the part of it a preset reproduces.

    ``authors`` is as cited ("J. Hu, L. Shen, G. Sun" or "D. Tran et al."); ``kind`` says
    what the document is when it is not a paper ("course report", "GitHub repository");
    ``venue`` and ``year`` as published. ``builds_on`` holds the works the study rests on (its
    dataset, the modules it compares), each with a ``role`` saying which.
    """

    title: str
    authors: str = ""
    year: int | None = None
    venue: str = ""
    kind: str = ""
    url: str | None = None
    part: str = ""
    role: str = ""
    builds_on: tuple[Source, ...] = ()

    def reference(self) -> str:
        """This document alone: authors, "title", kind, venue year, URL."""
        published = " ".join(str(x) for x in (self.venue, self.year) if x)
        return ", ".join(x for x in (self.authors, f'"{self.title}"', self.kind, published,
                                     self.url) if x)

    def cite(self, sep: str = "; ") -> str:
        """The full citation: the document, the part reproduced, then what it builds on."""
        head = self.reference() + (f", {self.part}" if self.part else "")
        rest = [f"{w.role}: {w.reference()}" if w.role else w.reference() for w in self.builds_on]
        return sep.join([head, *rest])

    def cite_short(self) -> str:
        """One line for listings: "title", kind, venue year, part (no authors, no addresses)."""
        published = " ".join(str(x) for x in (self.venue, self.year) if x)
        return ", ".join(x for x in (f'"{self.title}"', self.kind, published, self.part) if x)

    @property
    def urls(self) -> tuple[str, ...]:
        """Every address in the citation: the document's own first, then its works'."""
        return tuple(u for u in (self.url, *(w.url for w in self.builds_on)) if u)

    def __str__(self) -> str:
        return self.cite()


def cite(source: Source | str, sep: str = "; ") -> str:
    return source if isinstance(source, str) else source.cite(sep)


def cite_short(source: Source | str) -> str:
    return source if isinstance(source, str) else source.cite_short()


def source_url(source: Source | str) -> str | None:
    """The document's own address; None when it has none (or the source is plain text)."""
    return None if isinstance(source, str) else source.url


# --- The works the presets cite. Names, years and addresses as the documents give them. ---

CBAM = Source(
    title="CBAM: Convolutional Block Attention Module",
    authors="S. Woo, J. Park, J.-Y. Lee, I. S. Kweon", year=2018,
    url="https://arxiv.org/abs/1807.06521",
)
SQUEEZE_EXCITE = Source(
    title="Squeeze-and-Excitation Networks", authors="J. Hu, L. Shen, G. Sun",
    venue="CVPR", year=2018, url="https://arxiv.org/abs/1709.01507",
)

# Course report, "Problem 4: Impact of Attention Mechanisms in Deep Learning": Part A on
# Reduced MNIST, Part B on spoken digits. It names no author, year or address.
ATTENTION_COURSE_REPORT = Source(
    title="Impact of Attention Mechanisms in Deep Learning", kind="course report",
)
FSDD_KAGGLE = Source(
    title="Free Spoken Digits Dataset", authors="A. Chalker", venue="Kaggle", year=2023,
    url="https://www.kaggle.com/datasets/alanchn31/free-spoken-digits",
)
FSDD_GITHUB = Source(
    title="Free Spoken Digit Dataset", kind="GitHub repository",
    url="https://github.com/Jakobovski/free-spoken-digit-dataset",
)

# Project write-up: Part I images with spatial attention, Part II WLASL video. It names no
# author, year or address.
ATTENTION_TRAINING_WRITEUP = Source(
    title="How Attention Affects CNN Modules During Training", kind="project write-up",
)
WLASL = Source(
    title="Word-level Deep Sign Language Recognition from Video", authors="D. Li et al.",
    venue="WACV", year=2020, url="https://github.com/dxli94/WLASL",
)

CNNTENTION = Source(
    title="CNNtention: Can CNNs do better with Attention?", kind="arXiv:2412.11657",
    year=2024, url="https://arxiv.org/abs/2412.11657",
)

VGG_ATTENTION_BLOG = Source(
    title="How Attention Improves a CNN's performance: A Beginner's Perspective",
    authors="Ong Jun Hong, Heng Kim Rui, Aw Chong Kiang, Lum Nian Hua Eunice",
    kind="blog article",
)
LEARN_TO_PAY_ATTENTION = Source(
    title="Learn to Pay Attention", authors="S. Jetley, N. Lord, N. Lee, P. Torr",
    venue="ICLR", year=2018,
)
MELANOMA_ATTENTION = Source(
    title="Melanoma Recognition via Visual Attention",
    authors="Y. Yan, J. Kawahara, G. Hamarneh", venue="IPMI", year=2019,
    url="https://www2.cs.sfu.ca/~hamarneh/ecopy/ipmi2019.pdf",
)

VIDEO_3DCNN_ATTENTION = Source(
    title="Video processing with 3DCNN and Attention mechanism", kind="GitHub repository",
    url="https://github.com/vuthanhtung2412/3DCNN-Attention-mechanism",
)
R2PLUS1D = Source(
    title="A Closer Look at Spatiotemporal Convolutions for Action Recognition",
    authors="D. Tran et al.", venue="CVPR", year=2018,
)
PERCEIVER = Source(
    title="Perceiver: General Perception with Iterative Attention", authors="A. Jaegle et al.",
    venue="ICML", year=2021,
)
HMDB51 = Source(
    title="HMDB: A Large Video Database for Human Motion Recognition",
    authors="H. Kuehne et al.", venue="ICCV", year=2011,
)


def with_role(work: Source, role: str) -> Source:
    """``work`` as one of a study's `builds_on`, labelled with what it is to the study."""
    return replace(work, role=role)
