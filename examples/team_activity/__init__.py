"""An example application: team activities generated in the background, one job per request."""
