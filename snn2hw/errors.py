class UserError(Exception):
    """A mistake in the user's input (file, option, data). The CLI prints its one-sentence message and exits 2."""
