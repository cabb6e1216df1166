"""Infrastructure shared by every area: settings, database, clock, errors, logging."""
