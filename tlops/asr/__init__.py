"""Speech recognition (`task: speech_recognition`): CSV `path,text` splits (`files`), the transcript normalisation and
character alphabet (`text`), CTC decoding with an optional word n-gram LM (`decode`), WER/CER (`metrics`) and the CTC
head on a backbone's frame features (`model`). Plain Python + torch; no pipeline imports."""
