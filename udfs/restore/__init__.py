"""Face restoration of the crops (``restore.faces`` -> ``silver.restored``): ``align`` (FFHQ template,
similarity transform, feathered paste-back), ``landmarks`` (dlib 68 on every crop frame), ``backends``
(enhance, spandrel, none), ``eyes`` (the eye-artifact screen), ``params`` and ``clip`` (one clip
restored into an immutable file)."""
