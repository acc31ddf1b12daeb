"""A run on disk: its folders and the paths of the files in them (folder.py), its lock (lock.py)
and status.json (status.py), its checkpoint files and the policy that writes and deletes them
(checkpoints.py), and what `-r` resumes from (resume.py)."""
