"""From an uploaded image to the model's input: the white-cell finder (`localisation.py`)
and the one input transform that training and serving both run (`transform.py`)."""
