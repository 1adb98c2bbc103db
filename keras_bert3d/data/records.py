"""What every dataset index produces: video records with labels, class names and what is missing."""
import dataclasses
import json


@dataclasses.dataclass(frozen=True)
class VideoRecord:
    """One labelled video: a video file, or a folder of extracted frames.

    Attributes:
        path: the video file or the frame folder.
        label: 0-based index in the dataset's official class order.
        class_name: the class's name.
        num_frames: the frame count when the index knows it (frame folders' split files),
            else ``None`` (probed when decoding).
    """

    path: str
    label: int
    class_name: str
    num_frames: int | None = None

    def to_dict(self):
        return {"path": self.path, "label": self.label, "class": self.class_name, "num_frames": self.num_frames}


@dataclasses.dataclass
class VideoIndex:
    """The records of one split/subset, the class names in label order, and the listed
    entries that are not on disk (reported once, up front)."""

    records: list
    class_names: list
    missing: list = dataclasses.field(default_factory=list)
    source: str = "video"  # "video" (files) or "frames" (folders of JPEGs)
    root: str | None = None  # the folder the index found the entries under (absolute), when it resolved one

    def __len__(self):
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    @property
    def num_classes(self):
        return len(self.class_names)

    def to_json(self):
        return json.dumps([r.to_dict() for r in self.records], indent=1)

    def summary(self):
        text = f"{len(self.records)} videos in {self.num_classes} classes ({self.source})"
        if self.missing:
            shown = ", ".join(self.missing[:10]) + (" ..." if len(self.missing) > 10 else "")
            text += f"; {len(self.missing)} listed but missing on disk: {shown}"
        return text
