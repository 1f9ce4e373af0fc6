"""An example application: a summarization service whose jobs are accepted with 202 and polled."""
