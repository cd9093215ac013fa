"""The media repository: files on disk, their metadata, thumbnails, URL previews, retention."""
