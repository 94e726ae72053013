"""Evidence: the objects on the wire as DICOM files, and the frames behind a flow."""
