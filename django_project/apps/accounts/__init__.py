"""Users: email is the login (unique whatever its case), with the profile fields of the Core App."""
