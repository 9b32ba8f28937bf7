"""tunedeck's screens: the projects list, one project, help and the dialogs."""
