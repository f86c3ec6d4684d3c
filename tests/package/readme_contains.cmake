# Fails unless the document DOC (-DDOC) contains the file CODE (-DCODE) verbatim from the first
# line containing START (-DSTART) to the end.
file(READ "${DOC}" doc)
file(READ "${CODE}" code)
string(FIND "${code}" "${START}" start)
if(start EQUAL -1)
  message(FATAL_ERROR "${CODE} has no line with '${START}'")
endif()
string(SUBSTRING "${code}" ${start} -1 body)
string(FIND "${doc}" "${body}" found)
if(found EQUAL -1)
  message(FATAL_ERROR "${DOC} does not contain ${CODE} verbatim; copy it into the document")
endif()
