"""Members' rights requests (access, correction, deletion) and their legal deadlines."""
