"""One small hierarchy of typed errors; the CLI turns each into a one-line message and an exit code."""


class VQClipError(Exception):
    """Base class: a failure vqclip can explain in one line. Runtime failures exit with 1."""

    exit_code = 1


class UsageError(VQClipError):
    """Bad input from the user (options, prompts, files): exit code 2."""

    exit_code = 2


class ConfigError(UsageError):
    """An unknown key, a bad value or an unknown preset."""


class PromptError(UsageError):
    """A prompt that cannot be parsed or is empty."""


class UnknownNameError(UsageError):
    """A name that is not in a registry; the message lists the valid ones."""

    def __init__(self, kind: str, name: str, valid):
        valid = sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; choose one of: {', '.join(valid)}")
        self.kind, self.name, self.valid = kind, name, valid


class ModelFilesMissing(UsageError):
    """Model files that are not on disk; the message says which and how to get them."""


class CheckpointError(VQClipError):
    """A checkpoint that is corrupt, unsafe, or does not fit its config."""


class ImageError(UsageError):
    """An init or prompt image that is missing, unreadable or unsupported."""


class DeviceError(UsageError):
    """A device that was asked for but is not available."""


class OutOfMemory(VQClipError):
    """A run that ran out of device memory; the message suggests a size that fits."""


class OutputError(VQClipError):
    """An output that could not be written (permissions, disk full)."""


class DownloadError(VQClipError):
    """A model file that could not be fetched from any of its sources, or whose checksum did not match."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (library messages can span many lines), for one-line errors."""
    lines = str(e).strip().splitlines()
    return lines[0][:limit] if lines else type(e).__name__
