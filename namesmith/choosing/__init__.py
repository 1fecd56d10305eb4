"""What helps a person choose a name: syllables, sound, popularity, fit with a surname, facts."""
